"""Malformed and hostile request bodies against a real modelport process (iris, 2 workers).

Every one gets a 400 JSON answer with a message, never a 500; none makes a worker
allocate; a large body being decoded does not stop the server answering probes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.conftest import Server, start_server

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(iris_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(iris_model, "--workers", "2", tmp=tmp_path_factory.mktemp("hostile"))
    yield srv
    srv.stop()


def post(server: Server, path: str, body: bytes, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{server.base}{path}", content=body, headers=JSON, timeout=timeout)


def error_message(resp: httpx.Response, path: str) -> str:
    assert resp.headers["content-type"].startswith("application/json"), resp.text[:200]
    assert "Traceback" not in resp.text and "internal server error" not in resp.text
    body = resp.json()
    return str(body["message"] if path == "/invocations" else body["error"])


PATHS = ["/v2/models/iris/infer", "/v1/models/iris:predict", "/invocations"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"inputs":' + b"[" * 100_000 + b"}",
        b'{"dataframe_split":' + b"[" * 600 + b"]" * 600 + b"}",  # msgspec parses it; MLflow might not
    ],
    ids=["bare", "inside-a-key", "balanced-600"],
)
def test_deep_nesting_is_400_with_a_message(server: Server, path: str, body: bytes) -> None:
    resp = post(server, path, body)
    assert resp.status_code == 400, resp.text[:300]
    assert "nested" in error_message(resp, path)


def test_deep_nesting_inside_v2_data_and_parameters(server: Server) -> None:
    deep = b"[" * 100_000 + b"1" + b"]" * 100_000
    data = b'{"inputs":[{"name":"a","datatype":"FP64","shape":[1],"data":' + deep + b"}]}"
    params = (
        b'{"parameters":{"p":' + deep + b'},"inputs":[{"name":"a","datatype":"FP64","shape":[1],"data":[1]}]}'
    )
    for body in (data, params):
        resp = post(server, PATHS[0], body)
        assert resp.status_code == 400 and "nested" in error_message(resp, PATHS[0])


def test_no_request_above_logged_an_unexpected_error(server: Server) -> None:
    test_deep_nesting_inside_v2_data_and_parameters(server)
    assert "unexpected error" not in server.log()
    assert "Traceback" not in server.log()


def test_duplicate_input_names_are_400(server: Server) -> None:
    inputs = [{"name": c, "datatype": "FP64", "shape": [1], "data": [1.0]} for c in COLUMNS]
    inputs.append({"name": "petal_width", "datatype": "FP64", "shape": [1], "data": [9.0]})
    resp = post(server, PATHS[0], msgspec.json.encode({"inputs": inputs}))
    assert resp.status_code == 400
    assert "'petal_width' is given more than once" in error_message(resp, PATHS[0])


def _descendants(pid: int) -> list[int]:
    """Children, and theirs: forked workers are the children of their template."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_zero_width_bomb_is_400_and_no_worker_grows(server: Server) -> None:
    body = msgspec.json.encode(
        {"inputs": [{"name": c, "datatype": "FP64", "shape": [5_000_000, 0], "data": []} for c in COLUMNS]}
    )
    assert len(body) < 400
    pids = [server.proc.pid, *_descendants(server.proc.pid)]
    assert len(pids) >= 3  # the front and its two workers (and the template they were forked from)
    before = {p: _rss_mb(p) for p in pids}
    for _ in range(3):
        resp = post(server, PATHS[0], body)
        assert resp.status_code == 400
        assert "rows of no elements" in error_message(resp, PATHS[0])
    bytes_bomb = msgspec.json.encode(
        {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [50_000_000], "data": [""] * 10}]}
    )
    resp = post(server, PATHS[0], bytes_bomb)
    assert resp.status_code == 400 and "shapes and data disagree" in error_message(resp, PATHS[0])
    after = {p: _rss_mb(p) for p in pids}
    grown = {p: round(after[p] - before[p]) for p in pids}
    assert all(g < 200 for g in grown.values()), grown


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_probes_answer_while_a_48mb_bytes_body_is_decoded(server: Server, nested: bool) -> None:
    n = 1_600_000
    data = [f"w{i:07d}-short-text-for-you" for i in range(n)]  # 30 bytes of JSON each
    shape = [n, 1] if nested else [n]
    tensor = {
        "name": "sepal_length",
        "datatype": "BYTES",
        "shape": shape,
        "data": [[d] for d in data] if nested else data,
    }
    body = msgspec.json.encode({"inputs": [tensor]})
    del data
    assert 40e6 < len(body) < 60e6
    waits: list[float] = []
    during: list[float] = []
    busy = threading.Event()
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=server.base, timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                assert client.get("/v2/health/live").status_code == 200
                waits.append(time.perf_counter() - started)
                if busy.is_set():
                    during.append(waits[-1])
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        time.sleep(0.3)
        busy.set()
        resp = post(server, PATHS[0], body, timeout=120)
        busy.clear()
        time.sleep(0.2)
    finally:
        stop.set()
        poller.join()
    # The iris signature wants FP64 columns: the request is refused, after being decoded.
    assert resp.status_code == 400, resp.text[:300]
    assert "signature" in error_message(resp, PATHS[0])
    assert len(during) >= 3, during
    print(
        f"\n48 MB BYTES ({'nested' if nested else 'flat'}): {len(during)} probes, slowest {max(waits):.3f} s"
    )
    # Measured here: 0.06 s (flat) and 0.16 s (nested); the code before this check: 0.4 s and 1.5-3.6 s.
    assert max(waits) < 1.0, sorted(waits)[-5:]
