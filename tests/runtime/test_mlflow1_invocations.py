"""/invocations on a worker running MLflow 1.x answers as MLflow 1.x's own scoring server does.

MLflow 1.x has no ``scoring_server.invocations``; its Flask view is the reference, run by MLflow
1.30.1 itself beside modelport, and every body below is sent to both.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.runtime.mlflow1_support import COLUMNS, MLFLOW1, PROBE

pytestmark = pytest.mark.slow

JSON = "application/json"
CSV_BODY = (",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, row)) for row in PROBE) + "\n").encode()
SPLIT = json.dumps({"columns": COLUMNS, "data": PROBE}).encode()
RECORDS = json.dumps([dict(zip(COLUMNS, row)) for row in PROBE]).encode()

CASES = [
    ("split dict", JSON, SPLIT),
    ("records list", JSON, RECORDS),
    ("format=pandas-split", "application/json; format=pandas-split", SPLIT),
    ("format=pandas-records", "application/json; format=pandas-records", RECORDS),
    ("csv", "text/csv", CSV_BODY),
    ("instances", JSON, json.dumps({"instances": [dict(zip(COLUMNS, r)) for r in PROBE]}).encode()),
    # MLflow 2.x's shapes, which 1.x does not read: modelport must not answer them for it.
    (
        "2.x dataframe_split",
        JSON,
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": PROBE}}).encode(),
    ),
    ("2.x dataframe_records", JSON, json.dumps({"dataframe_records": json.loads(RECORDS)}).encode()),
    ("malformed json", JSON, b'{"columns": ['),
    # One extra column: MLflow lists extras from a set, in an order that varies by process.
    ("wrong columns", JSON, json.dumps({"columns": ["a"], "data": [[1]]}).encode()),
    ("unsupported type", "text/plain", b"5.1,3.5,1.4,0.2"),
    ("latin-1 charset", "text/csv; charset=latin-1", CSV_BODY),
]


def _answer(resp: httpx.Response) -> tuple[int, str, object]:
    mimetype = resp.headers.get("content-type", "").split(";")[0].strip()
    if mimetype != JSON:
        return resp.status_code, mimetype, resp.text
    body = resp.json()
    if isinstance(body, dict):
        body.pop("stack_trace", None)  # a server-side traceback: modelport keeps it in its log
    return resp.status_code, mimetype, body


@pytest.mark.parametrize(("case", "content_type", "body"), CASES, ids=[c[0] for c in CASES])
def test_answers_as_mlflow_1x_itself(
    served_1x: Server, reference_1x: str, case: str, content_type: str, body: bytes
) -> None:
    headers = {"content-type": content_type}
    want = _answer(httpx.post(f"{reference_1x}/invocations", content=body, headers=headers, timeout=30))
    got = _answer(httpx.post(f"{served_1x.base}/invocations", content=body, headers=headers, timeout=30))
    assert got == want, case


def test_predictions_are_the_models(served_1x: Server, model_1x: tuple[Path, list[int]]) -> None:
    resp = httpx.post(f"{served_1x.base}/invocations", content=CSV_BODY, headers={"content-type": "text/csv"})
    assert resp.status_code == 200, resp.text
    # MLflow 1.x answers a bare list, not 2.x's {"predictions": [...]}.
    assert resp.json() == model_1x[1]
    assert httpx.get(f"{served_1x.base}/version").text == MLFLOW1


def test_v2_on_the_same_worker(served_1x: Server, model_1x: tuple[Path, list[int]]) -> None:
    inputs = [
        {"name": name, "datatype": "FP64", "shape": [len(PROBE)], "data": [row[i] for row in PROBE]}
        for i, name in enumerate(COLUMNS)
    ]
    resp = httpx.post(f"{served_1x.base}/v2/models/iris/infer", json={"inputs": inputs}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"] == model_1x[1]


def test_skinny_1x_env_serves_and_blames_the_glue_not_the_model(
    skinny1_python: Path, model_1x: tuple[Path, list[int]], tmp_path: Path
) -> None:
    """mlflow-skinny only: the worker finds MLflow (no `mlflow` distribution there) and serves V2;
    1.x's scoring server needs Flask, which skinny leaves out: a 500 of modelport's, saying so."""
    probe = [str(skinny1_python), "-c", "import importlib.metadata as m; m.version('mlflow')"]
    import subprocess

    assert subprocess.run(probe, capture_output=True).returncode != 0, "the env must lack the mlflow dist"
    server = start_server(
        model_1x[0], "--name", "iris", "--env", f"path:{skinny1_python.parent.parent}", tmp=tmp_path
    )
    try:
        assert f"mlflow {MLFLOW1}" in server.log()
        inputs = [
            {"name": n, "datatype": "FP64", "shape": [1], "data": [PROBE[1][i]]}
            for i, n in enumerate(COLUMNS)
        ]
        resp = httpx.post(f"{server.base}/v2/models/iris/infer", json={"inputs": inputs}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["data"] == model_1x[1][1:2]
        resp = httpx.post(
            f"{server.base}/invocations", content=SPLIT, headers={"content-type": JSON}, timeout=30
        )
        assert resp.status_code == 500, resp.text
        error = resp.json()
        assert error["error_code"] == "INTERNAL_ERROR"
        assert error["message"].startswith("modelport's glue failed")
        assert "flask" in error["message"] and "the model failed" not in error["message"]
    finally:
        server.stop()


def test_kserve_v1_predict_on_the_same_worker(served_1x: Server, model_1x: tuple[Path, list[int]]) -> None:
    """V1 rows (lists or dicts) reach MLflow 1.x in a shape it reads, and its bare list comes
    back as V1's {"predictions": [...]}; params, which 1.x cannot take, are a clear 400."""
    url = f"{served_1x.base}/v1/models/iris:predict"
    for instances in (PROBE, [dict(zip(COLUMNS, row)) for row in PROBE]):
        resp = httpx.post(url, json={"instances": instances}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"predictions": model_1x[1]}
    resp = httpx.post(url, json={"instances": PROBE, "params": {"k": 1}}, timeout=30)
    assert resp.status_code == 400 and "MLflow 1.x" in resp.json()["error"], resp.text
