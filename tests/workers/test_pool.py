"""Worker processes: crash → 503 at once and a restart; a worker under another interpreter."""

from __future__ import annotations

import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

CRASHER = textwrap.dedent(
    """
    import os, time
    import pandas as pd
    import mlflow.pyfunc


    class Crasher(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            x = float(model_input["x"].iloc[0])
            if x < 0:
                time.sleep(0.5)
                os._exit(3)
            return pd.DataFrame({"y": model_input["x"] * 2})
    """
)


@pytest.fixture(scope="module")
def crasher_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow.pyfunc
    import pandas as pd

    root = tmp_path_factory.mktemp("crasher")
    (root / "crasher_model.py").write_text(CRASHER)
    sys.path.insert(0, str(root))
    try:
        import crasher_model

        path = root / "model"
        example = pd.DataFrame({"x": [1.0]})
        mlflow.pyfunc.save_model(
            path,
            python_model=crasher_model.Crasher(),
            input_example=example,
            code_paths=[str(root / "crasher_model.py")],
            pip_requirements=["mlflow"],
        )
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("crasher_model", None)
    return path


def _infer(base: str, x: float) -> httpx.Response:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [x]}]}
    return httpx.post(f"{base}/v2/models/model/infer", json=body, timeout=60)


def test_crash_fails_in_flight_requests_fast_then_restarts(crasher_model: Path, tmp_path: Path) -> None:
    server = start_server(crasher_model, tmp=tmp_path)
    try:
        assert _infer(server.base, 1.0).json()["outputs"][0]["data"] == [2.0]
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            killer = pool.submit(_infer, server.base, -1.0)
            time.sleep(0.1)
            bystander = pool.submit(_infer, server.base, 5.0)
            responses = [killer.result(), bystander.result()]
        assert time.monotonic() - started < 10
        for resp in responses:
            assert resp.status_code == 503, resp.text
            assert "exited with code 3" in resp.json()["error"]
        deadline = time.monotonic() + 120
        while httpx.get(f"{server.base}/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        assert _infer(server.base, 4.0).json()["outputs"][0]["data"] == [8.0]
        assert "restarting it" in server.log()
    finally:
        server.stop()


def test_not_ready_while_loading_is_503(crasher_model: Path, tmp_path: Path) -> None:
    server = start_server(crasher_model, tmp=tmp_path, expect_ready=False)
    try:
        deadline = time.monotonic() + 60
        seen_503 = False
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{server.base}/v2/health/ready")
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            assert httpx.get(f"{server.base}/v2/health/live").status_code == 200
            resp = _infer(server.base, 1.0)
            if ready.status_code == 200:
                assert resp.status_code == 200, resp.text
                break
            assert ready.status_code == 503
            if resp.status_code == 503:  # (it may have become ready between the two calls)
                seen_503 = True
                assert "not ready" in resp.json()["error"]
            time.sleep(0.05)
        assert seen_503, "the server should answer 503 while the model loads"
    finally:
        server.stop()
