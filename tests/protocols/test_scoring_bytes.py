"""The exact bytes of MLflow scoring (/invocations) and V1 answers, pinned.

``scoring_bytes.json`` holds status, content type and body of every request below, as the
server answered before the core was made protocol-neutral (issue 8); any change to where
these answers are computed must leave them byte-for-byte equal. To re-record after a
deliberate change: ``MODELPORT_RECORD_BYTES=1 pytest tests/protocols/test_scoring_bytes.py``,
then review the diff of the JSON file.
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).with_name("scoring_bytes.json")
RECORD = os.environ.get("MODELPORT_RECORD_BYTES") == "1"

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}

RAISER_CODE = textwrap.dedent(
    '''
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import (
        INVALID_PARAMETER_VALUE,
        REQUEST_LIMIT_EXCEEDED,
        RESOURCE_DOES_NOT_EXIST,
    )


    class Raiser(mlflow.pyfunc.PythonModel):
        """Raises what its first x asks for: ValueError, MlflowException of several codes, ..."""

        def predict(self, context, model_input, params=None):
            x = float(model_input["x"].iloc[0])
            if x == 1:
                raise ValueError("x must not be 1")
            if x == 2:
                raise MlflowException("x=2 is not a valid value", error_code=INVALID_PARAMETER_VALUE)
            if x == 3:
                raise MlflowException("nothing for x=3", error_code=RESOURCE_DOES_NOT_EXIST)
            if x == 4:
                raise MlflowException("x=4 broke the model")
            if x == 5:
                raise RuntimeError("x=5 crashed")
            if x == 6:
                raise MlflowException("x=6: slow down", error_code=REQUEST_LIMIT_EXCEEDED)
            if x == 7:
                raise MlflowException("x=7 caf\\u00e9 \\"quoted\\"", error_code=INVALID_PARAMETER_VALUE)
            return model_input["x"] * 2
    '''
)


@pytest.fixture(scope="module")
def raiser_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    root = tmp_path_factory.mktemp("raiser")
    code = root / "code"
    code.mkdir()
    (code / "raiser_model.py").write_text(RAISER_CODE)
    sys.path.insert(0, str(code))
    try:
        import raiser_model

        path = root / "model"
        mlflow.pyfunc.save_model(
            path,
            python_model=raiser_model.Raiser(),
            signature=ModelSignature(
                inputs=Schema([ColSpec("double", "x")]), outputs=Schema([ColSpec("double")])
            ),
            input_example=pd.DataFrame({"x": [0.0, 10.0]}),
            code_paths=[str(code / "raiser_model.py")],
            pip_requirements=["mlflow", "pandas"],
        )
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("raiser_model", None)
    return path


@pytest.fixture(scope="module")
def raiser_server(raiser_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(raiser_model, "--name", "raiser", tmp=tmp_path_factory.mktemp("raiser-server"))
    yield server
    server.stop()


def _j(value: Any) -> bytes:
    return json.dumps(value).encode()


def split(columns: list[Any], data: list[Any], **extra: Any) -> bytes:
    return _j({"dataframe_split": {"columns": columns, "data": data}, **extra})


# (name, method, path, headers, body) per server: tables, one request a line.
# fmt: off
IRIS: list[tuple[str, str, str, dict[str, str], bytes]] = [
    ("split", "POST", "/invocations", JSON, split(COLUMNS, ROWS)),
    ("records", "POST", "/invocations", JSON, _j({"dataframe_records": [dict(zip(COLUMNS, r)) for r in ROWS]})),
    ("instances", "POST", "/invocations", JSON, _j({"instances": [dict(zip(COLUMNS, r)) for r in ROWS]})),
    ("inputs", "POST", "/invocations", JSON, _j({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}})),
    ("reordered", "POST", "/invocations", JSON, split(COLUMNS[::-1], [r[::-1] for r in ROWS])),
    ("integers", "POST", "/invocations", JSON, split(COLUMNS, [[5, 3, 1, 0], [7, 3, 5, 2]])),
    ("null", "POST", "/invocations", JSON, split(COLUMNS, [[5.1, None, 1.4, 0.2]])),
    ("index", "POST", "/invocations", JSON, _j({"dataframe_split": {"columns": COLUMNS, "index": [7], "data": [ROWS[0]]}})),
    ("missing-column-records", "POST", "/invocations", JSON, _j({"dataframe_records": [dict(zip(COLUMNS[:3], ROWS[0]))]})),
    ("non-string-column", "POST", "/invocations", JSON, split([1, *COLUMNS[1:]], [[1, 2, 3, 4]])),
    ("missing-column-split", "POST", "/invocations", JSON, split(["sepal_length"], [[1.0]])),
    ("wrong-columns", "POST", "/invocations", JSON, split(["a", "b", "c", "d"], [[1, 2, 3, 4]])),
    ("unicode-column", "POST", "/invocations", JSON, split(["caf\u00e9"], [[1.0]])),
    ("empty-data", "POST", "/invocations", JSON, split(COLUMNS, [])),
    ("split-and-records", "POST", "/invocations", JSON, _j({"dataframe_split": {"columns": COLUMNS, "data": ROWS}, "dataframe_records": []})),
    ("json-list", "POST", "/invocations", JSON, b"[1, 2]"),
    ("bad-json", "POST", "/invocations", JSON, b"{broken"),
    ("deep-json", "POST", "/invocations", JSON, b"[" * 300 + b"]" * 300),
    ("csv", "POST", "/invocations", CSV, (",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS) + "\n").encode()),
    ("csv-bad", "POST", "/invocations", CSV, b"a,b\n1,2\n"),
    ("csv-latin1", "POST", "/invocations", {"content-type": "text/csv; charset=latin-1"}, b"x\n1\n"),
    ("json-format-param", "POST", "/invocations", {"content-type": "application/json; format=pandas-split"}, b"{}"),
    ("json-charset", "POST", "/invocations", {"content-type": "application/json; charset=utf-8"}, split(COLUMNS, ROWS)),
    ("xml", "POST", "/invocations", {"content-type": "application/xml"}, b"x"),
    ("empty-content-type", "POST", "/invocations", {"content-type": ""}, b"{}"),
    ("no-content-type", "POST", "/invocations", {}, split(COLUMNS, ROWS)),
    ("get-invocations", "GET", "/invocations", {}, b""),
    ("ping", "GET", "/ping", {}, b""),
    ("health", "GET", "/health", {}, b""),
    ("v1-root", "GET", "/", {}, b""),
    ("v1-list", "GET", "/v1/models", {}, b""),
    ("v1-status", "GET", "/v1/models/iris", {}, b""),
    ("v1-status-unknown", "GET", "/v1/models/other", {}, b""),
    ("v1-instances-lists", "POST", "/v1/models/iris:predict", JSON, _j({"instances": ROWS})),
    ("v1-instances-records", "POST", "/v1/models/iris:predict", JSON, _j({"instances": [dict(zip(COLUMNS, r)) for r in ROWS]})),
    ("v1-inputs-lists", "POST", "/v1/models/iris:predict", JSON, _j({"inputs": ROWS})),
    ("v1-inputs-dict", "POST", "/v1/models/iris:predict", JSON, _j({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}})),
    ("v1-instances-params", "POST", "/v1/models/iris:predict", JSON, _j({"instances": ROWS, "params": {"a": 1}})),
    ("v1-no-instances", "POST", "/v1/models/iris:predict", JSON, _j({"rows": ROWS})),
    ("v1-bad-json", "POST", "/v1/models/iris:predict", JSON, b"[1,"),
    ("v1-deep-json", "POST", "/v1/models/iris:predict", JSON, b'{"instances":' + b"[" * 300 + b"]" * 300 + b"}"),
    ("v1-short-rows", "POST", "/v1/models/iris:predict", JSON, _j({"instances": [[1.0, 2.0]]})),
    ("v1-empty-instances", "POST", "/v1/models/iris:predict", JSON, _j({"instances": []})),
    ("v1-json-list", "POST", "/v1/models/iris:predict", JSON, b"[1]"),
    ("v1-unknown-model", "POST", "/v1/models/other:predict", JSON, _j({"instances": ROWS})),
    ("v1-explain", "POST", "/v1/models/iris:explain", JSON, b"{}"),
    ("v1-get-predict", "GET", "/v1/models/iris:predict", {}, b""),
    ("v1-post-status", "POST", "/v1/models/iris", JSON, b"{}"),
]

CUSTOM: list[tuple[str, str, str, dict[str, str], bytes]] = [
    ("params-frame", "POST", "/invocations", JSON, split(["name", "x"], [["ann", 1.0], ["bo", 2.5]], params={"scale": 2.0, "prefix": "yo"})),
    ("no-params", "POST", "/invocations", JSON, split(["name", "x", "bonus"], [["ann", 1.0, 0.5]])),
    ("missing-x", "POST", "/invocations", JSON, split(["name"], [["ann"]])),
    ("bad-param", "POST", "/invocations", JSON, split(["name", "x"], [["ann", 1.0]], params={"scale": "big"})),
    ("unknown-param", "POST", "/invocations", JSON, split(["name", "x"], [["ann", 1.0]], params={"nope": 1})),
    ("csv", "POST", "/invocations", CSV, b"name,x\nann,1.0\n"),
    ("v1-records", "POST", "/v1/models/greeter:predict", JSON, _j({"instances": [{"name": "ann", "x": 1.0}]})),
    ("v1-lists-params", "POST", "/v1/models/greeter:predict", JSON, _j({"instances": [["ann", 1.0, 0.5]], "params": {"prefix": "yo"}})),
    ("v1-bad-param", "POST", "/v1/models/greeter:predict", JSON, _j({"instances": [["ann", 1.0, 0.5]], "params": {"scale": "big"}})),
]

# fmt: on

RAISER: list[tuple[str, str, str, dict[str, str], bytes]] = []
for _x in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0):
    RAISER += [
        (f"fast-{_x}", "POST", "/invocations", JSON, split(["x"], [[_x]])),
        (f"mlflow-{_x}", "POST", "/invocations", JSON, _j({"inputs": {"x": [_x]}})),
        (f"csv-{_x}", "POST", "/invocations", CSV, f"x\n{_x}\n".encode()),
        (f"v1-{_x}", "POST", "/v1/models/raiser:predict", JSON, _j({"instances": [[_x]]})),
        (
            f"v2-{_x}",
            "POST",
            "/v2/models/raiser/infer",
            JSON,
            _j({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [_x]}]}),
        ),
    ]

CASES = {"iris": IRIS, "custom": CUSTOM, "raiser": RAISER}


def answer(server: Server, method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    resp = httpx.request(method, server.base + path, content=body or None, headers=headers, timeout=60)
    out = {
        "status": resp.status_code,
        "content_type": resp.headers.get("content-type"),
        "body": resp.content.decode(),
    }
    if "allow" in resp.headers:
        out["allow"] = resp.headers["allow"]
    return out


# MLflow lists some names from a set, whose order changes with each worker's hash seed.
_SET_OF_NAMES = re.compile(r"(\{|inputs: \[)('[^']*'(?:, '[^']*')+)([}\]])")


def _stable(answer: dict[str, Any]) -> dict[str, Any]:
    body = _SET_OF_NAMES.sub(
        lambda m: m.group(1) + ", ".join(sorted(m.group(2).split(", "))) + m.group(3), answer["body"]
    )
    return {**answer, "body": body}


def _check(which: str, server: Server) -> None:
    got = {name: answer(server, *rest) for name, *rest in CASES[which]}  # type: ignore[arg-type]
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if RECORD:
        golden[which] = got
        GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        return
    want = golden[which]
    assert sorted(got) == sorted(want)
    for name in want:
        assert _stable(got[name]) == _stable(want[name]), name


def test_iris_bytes(iris_server: Server) -> None:
    _check("iris", iris_server)


def test_custom_bytes(custom_server: Server) -> None:
    _check("custom", custom_server)


def test_raiser_bytes(raiser_server: Server) -> None:
    _check("raiser", raiser_server)
