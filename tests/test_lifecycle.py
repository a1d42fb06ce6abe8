"""The life of a request against a real server: deadlines, stuck and silent workers, readiness."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.workers.sleepy import save_sleepy_model, v2_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sleepy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sleepy_model(tmp_path_factory.mktemp("sleepy"))


class Answer:
    def __init__(self, resp: httpx.Response) -> None:
        self.status = resp.status_code
        self.body = resp.json()
        self.at = time.monotonic()


def infer(server: Server, sleep: float, tag: str) -> Answer:
    resp = httpx.post(f"{server.base}/v2/models/model/infer", json=v2_body(sleep, tag), timeout=120)
    return Answer(resp)


def ready_status(server: Server) -> int:
    return httpx.get(f"{server.base}/v2/health/ready", timeout=10).status_code


def wait_for(condition: Callable[[], bool], limit: float, what: str, server: Server) -> float:
    """Poll until ``condition`` holds; return when (monotonic)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {limit} s:\n{server.log()}"
        time.sleep(0.05)
    return time.monotonic()


def calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def worker_pids(server_pid: int) -> list[int]:
    """The server's worker processes: its children running the worker runtime, or, when they
    are forked (--worker-start fork), the children of its template."""
    children: dict[int, list[tuple[int, bytes]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append((int(entry.name), cmdline))
    pids = []
    for pid, cmdline in children.get(server_pid, []):
        if b"modelport_worker.template" in cmdline:
            pids.extend(child for child, _ in children.get(pid, []))
        elif b"modelport_worker" in cmdline:
            pids.append(pid)
    return pids


def metric(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.base}/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


def start_logged(model: Path, tmp_path: Path, *args: str) -> tuple[Server, Path]:
    """One worker, a 2 s request timeout, and the file the sleepy model logs its calls to."""
    log = tmp_path / "calls.log"
    server = start_server(
        model, "--request-timeout", "2", "--workers", "1", *args, tmp=tmp_path, env={"SLEEPY_LOG": str(log)}
    )
    return server, log


def test_overrunning_predict_gets_504_and_its_worker_is_replaced(sleepy_model: Path, tmp_path: Path) -> None:
    server, log = start_logged(sleepy_model, tmp_path)
    try:
        with ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            stuck: Future[Answer] = pool.submit(infer, server, 1000, "stuck")
            wait_for(lambda: "stuck" in calls(log), 10, "the stuck predict should start", server)
            bystander: Future[Answer] = pool.submit(infer, server, 0, "bystander")
            # While the stuck request is within its deadline the worker still counts as ready;
            # once it overran, readiness is 503 until the replacement has loaded (a forked one is
            # ready within tens of ms, too short to poll for: tests/workers/test_pool.py checks it).
            if "forked from template" not in server.log():
                wait_for(lambda: ready_status(server) == 503, 15, "readiness should turn 503", server)
            first, second = stuck.result(), bystander.result()
        assert first.status == 504, first.body
        assert "did not finish within 2 s (--request-timeout)" in first.body["error"]
        assert first.at - started < 15
        assert second.status == 503, second.body
        assert "replaced because a prediction on it overran" in second.body["error"]
        assert abs(second.at - first.at) < 2  # at once, not after a restart or a ping timeout
        wait_for(lambda: ready_status(server) == 200, 120, "readiness should be 200 again", server)
        assert infer(server, 0, "after").status == 200
        assert "bystander" not in calls(log)  # it waited behind the stuck one in the killed worker
        assert metric(server, "modelport_worker_restarts_total", model="model", cause="timeout") == 1
        assert metric(server, "modelport_workers_ready", model="model") == 1
    finally:
        server.stop()


def test_no_request_timeout_lets_a_slow_predict_finish(sleepy_model: Path, tmp_path: Path) -> None:
    server = start_server(sleepy_model, "--request-timeout", "0", tmp=tmp_path)
    try:
        answer = infer(server, 3, "slow")
        assert answer.status == 200, answer.body
        assert answer.body["outputs"][0]["data"] == [3.0]
    finally:
        server.stop()


def test_silent_worker_is_killed_and_replaced(sleepy_model: Path, tmp_path: Path) -> None:
    server = start_server(sleepy_model, *("--worker-ping-timeout", "3", "--workers", "1"), tmp=tmp_path)
    try:
        (pid,) = worker_pids(server.proc.pid)
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            held: Future[Answer] = pool.submit(infer, server, 0, "held")
            if "forked from template" not in server.log():
                # A forked replacement is ready within tens of ms: too short a 503 to poll for over
                # HTTP (tests/workers/test_pool.py checks readiness at the kill in both modes).
                wait_for(lambda: ready_status(server) == 503, 20, "readiness should turn 503", server)
            answer = held.result()
        assert answer.status == 503, answer.body
        assert "did not answer a ping for 3 s (--worker-ping-timeout)" in answer.body["error"]
        assert answer.at - stopped < 20
        wait_for(lambda: ready_status(server) == 200, 120, "readiness should be 200 again", server)
        assert worker_pids(server.proc.pid) != [pid]
        assert not Path(f"/proc/{pid}").exists()  # killed and reaped
        assert infer(server, 0, "after").status == 200
        assert metric(server, "modelport_worker_restarts_total", model="model", cause="unresponsive") == 1
    finally:
        server.stop()


def test_request_whose_deadline_passes_while_queued_is_never_run(sleepy_model: Path, tmp_path: Path) -> None:
    # Spawned: the deadline must pass while the worker is replaced, which a fork does in ~0.1 s.
    server, log = start_logged(sleepy_model, tmp_path, "--batching", "on", "--worker-start", "spawn")
    try:
        with ThreadPoolExecutor(2) as pool:
            stuck: Future[Answer] = pool.submit(infer, server, 1000, "stuck")
            wait_for(lambda: "stuck" in calls(log), 10, "the stuck predict should start", server)
            # Queued in the batcher behind the stuck call; its deadline passes while the
            # worker is being replaced (loading mlflow alone takes longer than this margin).
            time.sleep(0.2)
            queued: Future[Answer] = pool.submit(infer, server, 0, "queued")
            first, second = stuck.result(), queued.result()
        assert first.status == 504, first.body
        assert second.status == 504, second.body
        assert "did not finish within 2 s (--request-timeout)" in second.body["error"]
        assert "waiting for a worker" in second.body["error"]
        wait_for(lambda: ready_status(server) == 200, 120, "readiness should be 200 again", server)
        assert infer(server, 0, "after").status == 200
        assert "queued" not in calls(log) and "after" in calls(log)
    finally:
        server.stop()


def test_v1_and_mlflow_scoring_have_the_same_deadline(sleepy_model: Path, tmp_path: Path) -> None:
    server = start_server(sleepy_model, *("--request-timeout", "1", "--workers", "1"), tmp=tmp_path)
    try:
        scoring = {"dataframe_split": {"columns": ["sleep", "tag"], "data": [[1000.0, "mlflow"]]}}
        started = time.monotonic()
        resp = httpx.post(f"{server.base}/invocations", json=scoring, timeout=60)
        assert resp.status_code == 504, resp.text
        assert "within 1 s (--request-timeout)" in resp.json()["message"]
        assert resp.json()["error_code"] == "DEADLINE_EXCEEDED"  # what MLflow itself answers 504 with
        assert time.monotonic() - started < 15
        wait_for(lambda: ready_status(server) == 200, 120, "readiness should be 200 again", server)
        resp = httpx.post(
            f"{server.base}/v1/models/model:predict", json={"instances": [[1000.0, "v1"]]}, timeout=60
        )
        assert resp.status_code == 504, resp.text
        assert "within 1 s (--request-timeout)" in resp.json()["error"]
        wait_for(lambda: ready_status(server) == 200, 120, "readiness should be 200 again", server)
        resp = httpx.post(
            f"{server.base}/v1/models/model:predict", json={"instances": [[0.0, "ok"]]}, timeout=60
        )
        assert resp.status_code == 200, resp.text
    finally:
        server.stop()
