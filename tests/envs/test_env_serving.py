"""End to end: models saved by MLflow 2.9 ("optional") and by the newest MLflow ("required"),
each served by a real modelport process with and without an isolated environment."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from envs_support import uv_environ
from model_scripts import probe_frame

from tests.conftest import start_server

pytestmark = pytest.mark.slow


def _predict(base: str) -> list[int]:
    frame = probe_frame()
    inputs = [
        {"name": c, "datatype": "FP64", "shape": [len(frame)], "data": frame[c].tolist()}
        for c in frame.columns
    ]
    resp = httpx.post(f"{base}/v2/models/model/infer", json={"inputs": inputs}, timeout=60)
    assert resp.status_code == 200, resp.text
    return [int(v) for v in resp.json()["outputs"][0]["data"]]


@pytest.mark.parametrize(
    ("model_fixture", "policy", "isolated"),
    [
        ("model_29", "auto", True),
        ("model_29", "local", False),
        ("model_317", "uv", True),
        ("model_317", "auto", False),
    ],
)
def test_served_with_and_without_isolation(
    request: pytest.FixtureRequest,
    env_cache: Path,
    tmp_path: Path,
    model_fixture: str,
    policy: str,
    isolated: bool,
) -> None:
    model_dir, expected = request.getfixturevalue(model_fixture)
    before = (model_dir / "MLmodel").read_bytes()
    env = uv_environ(MODELPORT_CACHE_DIR=str(env_cache))
    server = start_server(model_dir, "--name", "model", "--env", policy, tmp=tmp_path, env=env, timeout=900)
    try:
        assert _predict(server.base) == expected["pred"]
        log = server.log()
        assert ("env at" in log) == isolated, log
        if model_fixture == "model_29" and not isolated:
            assert "MLmodel rewritten for mlflow" in log  # "optional" is unreadable by mlflow >= 2.18
    finally:
        server.stop()
    assert (model_dir / "MLmodel").read_bytes() == before


def test_required_written_by_new_mlflow_is_served_by_mlflow_29(
    custom_model: Path, saving_venv_29: Path, tmp_path: Path
) -> None:
    """MLflow <= 2.9 raises TypeError on "required"; the worker gets an equivalent MLmodel instead."""
    before = (custom_model / "MLmodel").read_bytes()
    assert b'"required"' in before
    server = start_server(
        custom_model,
        "--name",
        "model",
        "--python",
        str(saving_venv_29),
        "--env",
        "local",
        tmp=tmp_path,
        env=uv_environ(),
    )
    try:
        inputs = [
            {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["ann"]},
            {"name": "x", "datatype": "FP64", "shape": [1], "data": [2.0]},
        ]
        body = {"inputs": inputs, "parameters": {"scale": 3.0}}
        resp = httpx.post(f"{server.base}/v2/models/model/infer", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        assert {o["name"]: o["data"] for o in resp.json()["outputs"]} == {
            "greeting": ["hello ann"],
            "score": [6.0],
        }
        assert "mlflow 2.9.2" in server.log() and "MLmodel rewritten for mlflow 2.9.2" in server.log()
        assert httpx.get(f"{server.base}/version").text == "2.9.2"
    finally:
        server.stop()
    assert (custom_model / "MLmodel").read_bytes() == before
