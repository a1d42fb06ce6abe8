"""Hostile clients against the real server process, over raw sockets: endless heads, slow and
idle connections, connection floods, clients that never read, oversized and compressed bodies,
HEAD, 405, pipelining. Bounds are generous: these assert behaviour, not speed."""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server

pytestmark = pytest.mark.slow

MAX_BODY = 100_000
ROW = {
    "inputs": [
        {"name": n, "datatype": "FP64", "shape": [1], "data": [v]}
        for n, v in zip(["sepal_length", "sepal_width", "petal_length", "petal_width"], [5.1, 3.5, 1.4, 0.2])
    ]
}


@pytest.fixture(scope="module")
def server(iris_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        iris_model,
        "--max-body-bytes",
        str(MAX_BODY),
        "--header-timeout",
        "2",
        "--keep-alive-timeout",
        "2",
        tmp=tmp_path_factory.mktemp("hostile"),
    )
    yield srv
    srv.stop()


def connect(srv: Server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)


def read_until_closed(s: socket.socket, limit: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` seconds pass)."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def read_responses(s: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse ``count`` responses (content-length framed) from a keep-alive connection."""
    buf = b""
    out: list[tuple[int, dict[str, str], bytes]] = []
    head_only = False
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return out
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if status == 100:
            continue
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(buf) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        out.append((status, headers, buf[:length]))
        buf = buf[length:]
    return out


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def status_of(data: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3})", data)
    assert match, data[:200]
    return int(match.group(1))


# --- request head --------------------------------------------------------------------------


def test_endless_header_gets_431_and_costs_nothing(server: Server) -> None:
    pid = server.proc.pid
    rss_before, cpu_before = rss_kib(pid), cpu_seconds(pid)
    sent = 0
    with connect(server) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        chunk = b"a" * 65536
        try:
            for _ in range(4000):  # up to 256 MiB: far past any cap
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = read_until_closed(s)
    assert sent < 64 * 1024 * 1024, "the server kept reading an endless header"
    if data:  # the 431 may be lost to the reset when the client was still writing
        assert status_of(data) == 431
    assert rss_kib(pid) - rss_before < 50 * 1024
    assert cpu_seconds(pid) - cpu_before < 5.0


def test_header_just_over_the_cap_is_431(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
        data = read_until_closed(s)
    assert status_of(data) == 431
    assert b"--max-header-bytes" in data


def test_header_under_the_cap_is_served(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 30_000 + b"\r\n\r\n")
        [(status, _, body)] = read_responses(s, 1)
    assert status == 200 and b"modelport" in body


def test_endless_url_gets_414(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /v2/" + b"u" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until_closed(s)
    assert status_of(data) == 414


# --- slow and idle clients -----------------------------------------------------------------


def test_half_sent_head_is_timed_out_with_408(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        data = read_until_closed(s, limit=20)
    assert status_of(data) == 408
    assert time.monotonic() - started < 15


def test_byte_a_second_head_is_still_timed_out(server: Server) -> None:
    with connect(server) as s:
        started = time.monotonic()
        s.settimeout(0.2)
        closed = False
        for byte in b"GET /v2 HTTP/1.1\r\nHost: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n":
            try:
                s.sendall(bytes([byte]))
                if s.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 15:
                break
        else:
            pytest.fail("the whole slow head was accepted")
    assert closed
    assert time.monotonic() - started < 15


def test_silent_connection_is_closed(server: Server) -> None:
    with connect(server) as s:
        started = time.monotonic()
        assert read_until_closed(s, limit=20) == b""
    assert time.monotonic() - started < 15


def test_idle_keep_alive_connection_is_closed(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, _, _)] = read_responses(s, 1)
        assert status == 200
        started = time.monotonic()
        assert read_until_closed(s, limit=20) == b""
    assert time.monotonic() - started < 15


def test_stalled_body_is_timed_out(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b'POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"inputs"')
        data = read_until_closed(s, limit=20)
    assert status_of(data) == 408


# --- connection cap ------------------------------------------------------------------------


def test_slow_clients_past_the_cap_do_not_lock_out_the_probe(iris_model: Path, tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = start_server(iris_model, "--max-connections", "100", "--header-timeout", "60", tmp=tmp_path)
    slow: list[socket.socket] = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            try:
                s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            slow.append(s)
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            with connect(srv) as probe:
                probe.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
                [(status, _, _)] = read_responses(probe, 1)
            latencies.append(time.monotonic() - started)
            assert status == 200
        assert max(latencies) < 5
        # Once the slow clients have been at it a while, a real request makes room for itself:
        # the connection whose head has been arriving longest is closed with 408.
        time.sleep(1.5)
        for request in (
            b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(json.dumps(ROW)), json.dumps(ROW).encode()),
        ):
            with connect(srv) as other:
                other.sendall(request)
                [(status, _, body)] = read_responses(other, 1)
                assert status == 200, body
        evicted = []
        for s in slow:
            s.settimeout(0.01)
            try:
                evicted.append(s.recv(200))
            except (TimeoutError, ConnectionResetError):
                pass
        assert any(e.startswith(b"HTTP/1.1 408") for e in evicted)
    finally:
        for s in slow:
            s.close()
        srv.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_past_the_cap_of_busy_connections_only_probes_are_answered(iris_model: Path, tmp_path: Path) -> None:
    srv = start_server(iris_model, "--max-connections", "10", "--header-timeout", "60", tmp=tmp_path)
    busy = []
    try:
        # Ten requests whose bodies are still arriving: busy, not slow to send a head.
        for _ in range(10):
            s = connect(srv)
            s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\ncontent-length: 1000\r\n\r\n{")
            busy.append(s)
        time.sleep(1.5)
        with connect(srv) as other:
            other.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
            data = read_until_closed(other)
        assert status_of(data) == 503 and b"--max-connections" in data
        with connect(srv) as probe:
            probe.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            [(status, _, _)] = read_responses(probe, 1)
        assert status == 200
    finally:
        for s in busy:
            s.close()
        srv.stop()


def test_idle_keep_alive_connections_make_room(iris_model: Path, tmp_path: Path) -> None:
    srv = start_server(iris_model, "--max-connections", "10", tmp=tmp_path)
    idle = []
    try:
        for _ in range(10):
            s = connect(srv)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            read_responses(s, 1)
            idle.append(s)
        with connect(srv) as s:
            s.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n")
            [(status, _, _)] = read_responses(s, 1)
        assert status == 200
        # One idle connection was closed to make room.
        closed = 0
        for s in idle:
            s.settimeout(2)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
        assert closed >= 1
    finally:
        for s in idle:
            s.close()
        srv.stop()


# --- backpressure --------------------------------------------------------------------------


def test_client_that_never_reads_holds_little_server_memory(server: Server) -> None:
    pid = server.proc.pid
    before = rss_kib(pid)
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 100
    with connect(server) as s:
        s.setblocking(False)
        deadline = time.monotonic() + 8
        written = 0
        while time.monotonic() < deadline:
            try:
                written += s.send(request)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        growth = rss_kib(pid) - before
    assert written > 0
    assert growth < 64 * 1024, f"server grew by {growth} KiB for a client that never read"


# --- bodies --------------------------------------------------------------------------------


def test_over_limit_content_length_is_413_before_the_body(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        data = read_until_closed(s, limit=10)
    assert status_of(data) == 413
    assert b"--max-body-bytes" in data


def test_over_limit_expect_100_continue_gets_413_not_continue(server: Server) -> None:
    with connect(server) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        data = read_until_closed(s, limit=10)
    assert status_of(data) == 413
    assert b"100 Continue" not in data


def test_chunked_body_is_cut_where_it_crosses_the_limit(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (10_000, b"x" * 10_000)
        sent = 0
        try:
            for _ in range(1000):  # 10 MB offered, the limit is 100 kB
                s.sendall(chunk)
                sent += 10_000
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = read_until_closed(s, limit=10)
    assert sent < 5_000_000
    if data:
        assert status_of(data) == 413


def test_gzip_and_deflate_bodies_are_decoded(server: Server) -> None:
    body = json.dumps(ROW).encode()
    for encoding, packed in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", _raw_deflate(body)),
    ):
        with connect(server) as s:
            s.sendall(
                b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Encoding: {encoding}\r\nContent-Length: {len(packed)}\r\n\r\n".encode()
                + packed
            )
            [(status, _, answer)] = read_responses(s, 1)
        assert status == 200, answer
        assert json.loads(answer)["outputs"][0]["data"] == [0]


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def test_gzip_bomb_is_413(server: Server) -> None:
    bomb = gzip.compress(b"0" * 50_000_000)  # ~50 kB that inflate to 50 MB, over the 100 kB limit
    assert len(bomb) < MAX_BODY
    with connect(server) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb
        )
        data = read_until_closed(s)
    assert status_of(data) == 413


def test_unknown_content_encoding_is_415_naming_it(server: Server) -> None:
    with connect(server) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}"
        )
        [(status, _, body)] = read_responses(s, 1)
    assert status == 415 and b"br" in body


def test_corrupt_gzip_is_400(server: Server) -> None:
    with connect(server) as s:
        s.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello"
        )
        [(status, _, body)] = read_responses(s, 1)
    assert status == 400 and b"gzip" in body


# --- methods, paths, pipelining ------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/iris", "/ping", "/metrics"]
)
def test_head_answers_headers_without_a_body(server: Server, path: str) -> None:
    with connect(server) as s:
        # HEAD then GET on one connection: a body after the HEAD would desynchronise the GET.
        s.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        s.settimeout(5)
        buf = b""
        while buf.count(b"HTTP/1.1 ") < 2 or not buf.endswith(b'{"live":true}'):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    first, _, rest = buf.partition(b"\r\n\r\n")
    assert status_of(first) == 200
    assert rest.startswith(b"HTTP/1.1 200"), rest[:100]


def test_405_carries_allow(server: Server) -> None:
    with connect(server) as s:
        s.sendall(
            b"DELETE /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n\r\nPUT /v2 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        (s1, h1, _), (s2, h2, _) = read_responses(s, 2)
    assert (s1, h1["allow"]) == (405, "POST")
    assert (s2, h2["allow"]) == (405, "GET, HEAD")


def test_v2_with_a_trailing_slash(server: Server) -> None:
    with connect(server) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        [(status, _, body)] = read_responses(s, 1)
    assert status == 200 and json.loads(body)["name"] == "modelport"


def test_pipelined_requests_are_answered_in_order_before_the_400(server: Server) -> None:
    infer = json.dumps(ROW).encode()
    raw = (
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(infer)}\r\n\r\n".encode()
        + infer
        + b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"THIS IS NOT HTTP\r\n\r\n"
    )
    with connect(server) as s:
        s.sendall(raw)
        data = read_until_closed(s)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3})", data)]
    assert statuses == [200, 200, 200, 400]
    assert (
        data.index(b'{"live":true}')
        < data.index(b'"outputs"')
        < data.index(b"modelport")
        < data.index(b"HTTP/1.1 400")  # a bare "400" may be inside a random x-request-id
    )


def test_request_id_is_echoed_or_made(server: Server) -> None:
    with connect(server) as s:
        s.sendall(
            b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\nGET /v2 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        (_, h1, _), (_, h2, _) = read_responses(s, 2)
    assert h1["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", h2["x-request-id"])
