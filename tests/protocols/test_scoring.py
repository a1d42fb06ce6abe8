"""MLflow scoring protocol (/invocations, /ping, /health, /version) against a real process.

The oracle is MLflow's own scoring code run in-process on the same model: what
``mlflow models serve`` would answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import mlflow
import mlflow.pyfunc
import pytest
from mlflow.pyfunc import scoring_server

pytestmark = pytest.mark.slow

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def oracle(model_path: Path, body: str, content_type: str) -> object:
    model = mlflow.pyfunc.load_model(str(model_path))
    result = scoring_server.invocations(body, content_type, model, model.metadata.get_input_schema())
    return json.loads(result.response)


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": COLUMNS, "data": IRIS_ROWS}},
        {"dataframe_records": [dict(zip(COLUMNS, r)) for r in IRIS_ROWS]},
        {"instances": [dict(zip(COLUMNS, r)) for r in IRIS_ROWS]},
        {"inputs": {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(COLUMNS)}},
    ],
    ids=["dataframe_split", "dataframe_records", "instances", "inputs"],
)
def test_json_formats_equal_mlflow(iris_server, iris_model: Path, payload: dict) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(payload)
    resp = httpx.post(
        f"{iris_server.base}/invocations", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == oracle(iris_model, body, "application/json")
    assert len(resp.json()["predictions"]) == 3


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": COLUMNS[::-1], "data": [r[::-1] for r in IRIS_ROWS]}},
        {"dataframe_split": {"columns": COLUMNS, "data": [[5, 3, 1, 0], [7, 3, 5, 2]]}},
        {"dataframe_split": {"columns": COLUMNS, "data": [[5.1, None, 1.4, 0.2]]}},
        {"dataframe_split": {"columns": COLUMNS, "index": [7], "data": [[5.1, 3.5, 1.4, 0.2]]}},
        {"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}]},
        {
            "dataframe_split": {
                "columns": [1, "sepal_width", "petal_length", "petal_width"],
                "data": [[1, 2, 3, 4]],
            }
        },
    ],
    ids=["reordered-columns", "integers", "null", "index", "missing-column", "non-string-column"],
)
def test_edge_cases_equal_mlflow(iris_server, iris_model: Path, payload: dict) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(payload)
    resp = httpx.post(
        f"{iris_server.base}/invocations", content=body, headers={"content-type": "application/json"}
    )
    try:
        expected = oracle(iris_model, body, "application/json")
    except mlflow.exceptions.MlflowException as exc:
        assert resp.status_code == exc.get_http_status_code(), resp.text
        return
    assert resp.status_code == 200, resp.text
    assert resp.json() == expected


def test_csv_equals_mlflow(iris_server, iris_model: Path) -> None:  # type: ignore[no-untyped-def]
    csv = ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in IRIS_ROWS) + "\n"
    resp = httpx.post(f"{iris_server.base}/invocations", content=csv, headers={"content-type": "text/csv"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == oracle(iris_model, csv, "text/csv")


def test_params_and_dataframe_output(custom_server, custom_model: Path) -> None:  # type: ignore[no-untyped-def]
    payload = {
        "dataframe_split": {"columns": ["name", "x"], "data": [["ann", 1.0], ["bo", 2.5]]},
        "params": {"scale": 2.0, "prefix": "yo"},
    }
    body = json.dumps(payload)
    resp = httpx.post(
        f"{custom_server.base}/invocations", content=body, headers={"content-type": "application/json"}
    )
    assert resp.status_code == 200, resp.text
    expected = oracle(custom_model, body, "application/json")
    assert resp.json() == expected
    assert resp.json()["predictions"][0] == {"greeting": "yo ann", "score": 2.0}


def test_errors_are_4xx_in_mlflow_shape(iris_server) -> None:  # type: ignore[no-untyped-def]
    url = f"{iris_server.base}/invocations"
    resp = httpx.post(url, content=b"{broken", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "BAD_REQUEST" and "stack_trace" not in resp.json()
    missing = json.dumps({"dataframe_split": {"columns": ["sepal_length"], "data": [[1.0]]}})
    resp = httpx.post(url, content=missing, headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "missing inputs" in resp.json()["message"]
    resp = httpx.post(url, content=b"x", headers={"content-type": "application/xml"})
    assert resp.status_code == 415
    resp = httpx.post(url, content=b"{}", headers={"content-type": ""})
    assert resp.status_code == 415 and "Content-Type" in resp.json()["message"]


def test_ping_health_version(iris_server) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{iris_server.base}/ping").status_code == 200
    assert httpx.get(f"{iris_server.base}/health").status_code == 200
    assert httpx.get(f"{iris_server.base}/version").text == mlflow.__version__
