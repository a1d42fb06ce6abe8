"""KServe V1 REST against a real modelport process."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def expected(model: Path) -> list:
    return np.asarray(
        mlflow.pyfunc.load_model(str(model)).predict(pd.DataFrame(ROWS, columns=COLUMNS))
    ).tolist()


def test_model_status_and_listing(iris_server) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{iris_server.base}/v1/models/iris").json() == {"name": "iris", "ready": True}
    assert httpx.get(f"{iris_server.base}/v1/models").json() == {"models": ["iris"]}
    assert httpx.get(f"{iris_server.base}/v1/models/other").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"instances": ROWS},
        {"instances": [dict(zip(COLUMNS, r)) for r in ROWS]},
        {"inputs": ROWS},
    ],
    ids=["instances-lists", "instances-records", "inputs-lists"],
)
def test_predict_equals_pyfunc(iris_server, iris_model: Path, body: dict) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.post(f"{iris_server.base}/v1/models/iris:predict", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"predictions": expected(iris_model)}


def test_predict_errors(iris_server) -> None:  # type: ignore[no-untyped-def]
    url = f"{iris_server.base}/v1/models/iris:predict"
    resp = httpx.post(url, json={"rows": ROWS})
    assert resp.status_code == 400 and "instances" in resp.json()["error"]
    resp = httpx.post(url, content=b"[1,")
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    resp = httpx.post(url, json={"instances": [[1.0, 2.0]]})
    assert resp.status_code == 400 and "error" in resp.json()
    assert httpx.post(f"{iris_server.base}/v1/models/iris:explain", json={}).status_code == 404
