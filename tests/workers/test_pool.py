"""Worker processes: crash → 503 at once and a restart; silent and overrunning workers replaced."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelport.errors import RequestTimeout, WorkerCrashed
from modelport.inference import Deadline
from modelport.metrics import REGISTRY
from modelport.workers.batching import PredictCall, frame
from modelport.workers.pool import WorkerPool
from tests.conftest import start_server
from tests.workers.sleepy import save_sleepy_model

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


# --- the pool in-process, with real worker processes --------------------------------


@pytest.fixture(scope="module")
def sleepy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sleepy_model(tmp_path_factory.mktemp("sleepy"))


def sleep_frame(seconds: float, tag: str) -> tuple[dict[str, Any], list[Any]]:
    return frame(
        PredictCall(
            [("sleep", np.asarray([seconds], dtype=np.float64)), ("tag", np.asarray([tag], dtype=object))],
            "frame",
            None,
            1,
        )
    )


def make_pool(model: Path, name: str, ping_timeout: float = 10.0, start: str = "spawn") -> WorkerPool:
    async def prepare_load(hello: dict[str, Any]) -> str:
        return str(model)

    return WorkerPool(sys.executable, 1, prepare_load, ping_timeout=ping_timeout, model=name, start=start)


# Every in-process pool test runs with spawned workers and with workers forked from a template.
START_MODES = pytest.mark.parametrize("start", ["spawn", "fork"])


def restarts(name: str, cause: str) -> float | None:
    return REGISTRY.get_sample_value("modelport_worker_restarts_total", {"model": name, "cause": cause})


@START_MODES
def test_pings_find_a_silent_worker_and_it_is_replaced(sleepy_model: Path, start: str) -> None:
    async def main() -> tuple[Any, float, bool, int, int]:
        pool = make_pool(sleepy_model, f"silent-{start}", ping_timeout=1.0, start=start)
        await pool.start()
        try:
            old_pid = pool.workers[0].hello["pid"]
            os.kill(old_pid, signal.SIGSTOP)
            loop = asyncio.get_running_loop()
            stopped = loop.time()
            held = await asyncio.gather(pool.request(*sleep_frame(0, "held")), return_exceptions=True)
            noticed = loop.time() - stopped
            ready_after_kill = pool.ready
            await asyncio.wait_for(pool.wait_ready(), 120)
            reply, _ = await pool.request(*sleep_frame(0, "after"))
            assert reply["ok"] and reply["predict_s"] >= 0
            return held[0], noticed, ready_after_kill, old_pid, pool.workers[0].hello["pid"]
        finally:
            await pool.stop()

    held, noticed, ready_after_kill, old_pid, new_pid = asyncio.run(main())
    assert isinstance(held, WorkerCrashed)
    assert "did not answer a ping for 1 s (--worker-ping-timeout)" in held.message
    assert 1.0 <= noticed < 10  # the ping timeout plus an interval or two
    assert not ready_after_kill  # not ready from the moment it is killed
    assert new_pid != old_pid and not Path(f"/proc/{old_pid}").exists()
    assert restarts(f"silent-{start}", "unresponsive") == 1


class EmfileOnce:
    """A pool's ``prepare_load`` that fails once, when armed, as when no fd is left (an OSError,
    not a ModelportError); otherwise it loads ``model``."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self.armed = False
        self.failed = 0

    async def __call__(self, hello: dict[str, Any]) -> str:
        if self.armed:
            self.armed, self.failed = False, self.failed + 1
            raise OSError(errno.EMFILE, "Too many open files")
        return str(self.model)


async def kill_worker_until_replaced(pool: WorkerPool) -> tuple[int, int]:
    """SIGKILL worker 0; wait until its replacement is ready and answers; (old pid, new pid)."""
    old_pid = pool.workers[0].hello["pid"]
    os.kill(old_pid, signal.SIGKILL)

    async def replaced() -> None:
        while pool.workers[0].hello["pid"] == old_pid or not pool.ready:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(replaced(), 120)
    reply, _ = await pool.request(*sleep_frame(0, "after"))
    assert reply["ok"]
    return old_pid, pool.workers[0].hello["pid"]


@START_MODES
def test_a_restart_that_fails_with_an_oserror_is_logged_and_retried(
    sleepy_model: Path, start: str, caplog: pytest.LogCaptureFixture
) -> None:
    load = EmfileOnce(sleepy_model)

    async def main() -> tuple[int, int]:
        pool = WorkerPool(sys.executable, 1, load, model=f"emfile-{start}", start=start)
        await pool.start()
        try:
            load.armed = True  # the first restart fails
            return await kill_worker_until_replaced(pool)
        finally:
            await pool.stop()

    with caplog.at_level(logging.ERROR, logger="modelport.workers"):
        old_pid, new_pid = asyncio.run(main())
    assert load.failed == 1 and new_pid != old_pid  # the failed restart was retried, not dropped
    (failed,) = [r for r in caplog.records if "restarting worker 0 failed" in r.getMessage()]
    assert "Too many open files" in failed.getMessage()
    assert failed.exc_info is not None  # not a ModelportError: logged with its traceback


def test_a_template_that_cannot_be_replaced_is_logged_and_the_next_restart_forks_again(
    sleepy_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load = EmfileOnce(sleepy_model)

    def failures() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "the new worker template failed" in r.getMessage()]

    async def main() -> tuple[int, int]:
        pool = WorkerPool(sys.executable, 1, load, model="template-emfile", start="fork")
        await pool.start()
        try:
            assert pool.template is not None and pool.template.pid is not None
            load.armed = True  # the template started in its place fails
            os.kill(pool.template.pid, signal.SIGKILL)

            async def logged() -> None:
                while not failures():
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(logged(), 60)
            return await kill_worker_until_replaced(pool)  # forked from a template started anew
        finally:
            await pool.stop()

    with caplog.at_level(logging.INFO, logger="modelport.workers"):
        old_pid, new_pid = asyncio.run(main())
    (failed,) = failures()
    assert "Too many open files" in failed.getMessage() and failed.exc_info is not None
    assert new_pid != old_pid
    assert "forked from template" in caplog.text.rsplit("Too many open files", 1)[1]  # a new template


@START_MODES
def test_deadlines_answer_504_and_only_the_server_limit_kills_a_worker(
    sleepy_model: Path, start: str
) -> None:
    async def main() -> dict[str, Any]:
        pool = make_pool(sleepy_model, f"deadlines-{start}", start=start)
        await pool.start()
        loop = asyncio.get_running_loop()
        seen: dict[str, Any] = {}
        try:
            worker = pool.workers[0]
            pid = worker.hello["pid"]
            # A client's deadline and no server limit: answered at the deadline, the worker finishes.
            early = Deadline(loop.time() + 0.2, None, None)
            seen["client"] = await asyncio.gather(
                pool.request(*sleep_frame(1.0, "client"), early), return_exceptions=True
            )
            reply, _ = await pool.request(*sleep_frame(0, "next"))
            seen["same_worker"] = reply["ok"] and worker.hello["pid"] == pid and pool.ready
            # A client's deadline before the server's limit: answered early, killed at the limit.
            now = loop.time()
            held = asyncio.ensure_future(
                pool.request(*sleep_frame(1000, "stuck"), Deadline(now + 0.2, now + 2, 2))
            )
            # Recorded when the worker is condemned: it may be dead and restarting (its cause
            # cleared) before a poll of readiness would see it.
            condemned: list[tuple[str, float]] = []
            condemn = worker.condemn

            def spy(cause: str, reason: str) -> None:
                condemned.append((cause, loop.time()))
                condemn(cause, reason)

            worker.condemn = spy  # type: ignore[method-assign]
            seen["stuck"] = await asyncio.gather(held, return_exceptions=True)
            seen["ready_after_answer"] = pool.ready
            while not condemned and loop.time() - now < 30:
                await asyncio.sleep(0.05)
            seen["cause"], at = condemned[0] if condemned else (None, loop.time())
            seen["killed_after"] = at - now
            await asyncio.wait_for(pool.wait_ready(), 120)
            seen["new_pid"] = worker.hello["pid"] != pid
        finally:
            await pool.stop()
        return seen

    seen = asyncio.run(main())
    assert isinstance(seen["client"][0], RequestTimeout)
    assert "client's deadline" in seen["client"][0].message
    assert seen["same_worker"]
    assert isinstance(seen["stuck"][0], RequestTimeout)
    assert seen["ready_after_answer"]
    assert 2 <= seen["killed_after"] < 10 and seen["cause"] == "timeout"
    assert seen["new_pid"]
    assert restarts(f"deadlines-{start}", "timeout") == 1
