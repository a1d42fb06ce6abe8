# Quick start: `make serve-example` (set up, serve the bundled iris model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080

.PHONY: setup setup-test serve-example test test-fast lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

setup: $(PY)
	$(PY) -m pip install -q -e .

setup-test: $(PY)
	VENV=$(VENV) bash scripts/setup-test.sh

serve-example: setup
	@echo "modelport serving examples/iris on port $(PORT); in another shell try:"
	@echo "  curl -s -X POST localhost:$(PORT)/v2/models/iris/infer -H 'content-type: application/json' -d '{\"inputs\":[{\"name\":\"sepal_length\",\"datatype\":\"FP64\",\"shape\":[1],\"data\":[5.1]},{\"name\":\"sepal_width\",\"datatype\":\"FP64\",\"shape\":[1],\"data\":[3.5]},{\"name\":\"petal_length\",\"datatype\":\"FP64\",\"shape\":[1],\"data\":[1.4]},{\"name\":\"petal_width\",\"datatype\":\"FP64\",\"shape\":[1],\"data\":[0.2]}]}'"
	$(VENV)/bin/modelport serve examples/iris --http-port $(PORT)

test: setup-test
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup-test
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy modelport

bench: setup-test
	$(PY) benchmarks/serve_bench.py

clean:
	rm -rf $(VENV) .bench .cache
