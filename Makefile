# Quick start: `make serve-example` (set up, serve the bundled iris model) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080

.PHONY: setup setup-test serve-example test test-fast lint bench proto clean image pod-test

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

# The pod tests need the image: `make pod-test` builds it and runs them.
test: setup-test
	$(PY) -m pytest -q -p no:cacheprovider -m "not pods" $(PYTEST_ARGS)

test-fast: setup-test
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

lint: setup-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy modelport

# localhost/modelport:dev with podman: from the public Python base when it can be pulled, else
# from a base made here from Debian's packages (kept for the next build). See deploy/build-image.sh.
image:
	bash deploy/podman/setup.sh
	bash deploy/build-image.sh

# The image (and its torch test variant) in pods rendered the way KServe builds them.
pod-test: setup-test image
	bash deploy/build-image.sh --torch
	$(PY) -m pytest -q -p no:cacheprovider -m pods tests/deploy $(PYTEST_ARGS)

bench: setup-test
	$(PY) benchmarks/serve_bench.py

# Regenerate the committed gRPC stubs from modelport/protocols/proto/inference.proto (pinned grpcio-tools).
proto:
	PYTHON=$(PYTHON) bash scripts/gen_proto.sh

clean:
	rm -rf $(VENV) .bench .cache
