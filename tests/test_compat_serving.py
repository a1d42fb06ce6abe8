"""A model whose MLmodel was written by another MLflow version is served unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import start_server

pytestmark = pytest.mark.slow


def as_mlflow_29(model: Path, dest: Path) -> Path:
    """Rewrite a copy's signature the way MLflow 2.4-2.9 wrote it ("optional": true)."""
    shutil.copytree(model, dest)
    mlmodel = yaml.safe_load((dest / "MLmodel").read_text())
    cols = json.loads(mlmodel["signature"]["inputs"])
    for c in cols:
        required = c.pop("required", True)
        if not required:
            c["optional"] = True
    mlmodel["signature"]["inputs"] = json.dumps(cols)
    mlmodel["mlflow_version"] = "2.9.2"
    (dest / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return dest


def test_optional_written_by_mlflow_29_is_served_by_current_mlflow(
    custom_model: Path, tmp_path: Path
) -> None:
    old = as_mlflow_29(custom_model, tmp_path / "old")
    before = (old / "MLmodel").read_bytes()
    server = start_server(old, "--name", "greeter", tmp=tmp_path)
    try:
        inputs = [
            {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["ann"]},
            {"name": "x", "datatype": "FP64", "shape": [1], "data": [2.0]},
        ]
        resp = httpx.post(f"{server.base}/v2/models/greeter/infer", json={"inputs": inputs}, timeout=30)
        assert resp.status_code == 200, resp.text
        outputs = {o["name"]: o["data"] for o in resp.json()["outputs"]}
        assert outputs == {"greeting": ["hello ann"], "score": [2.0]}
    finally:
        server.stop()
    assert (old / "MLmodel").read_bytes() == before, "the user's MLmodel must not change"
