"""The HTTP/1.1 front in-process on a real loopback socket: keep-alive, pipelining, 100-continue,
chunked bodies, limits, malformed requests; and the same App under ASGI. The hostile clients
against the real server process are in test_hostile_clients.py."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
import pytest

from modelport.dataplane import DataPlane
from modelport.protocols.httpserver import HttpServer, Limits
from modelport.protocols.rest import App
from tests.conftest import free_port


async def _with_server(check, max_body: int = 1000):  # type: ignore[no-untyped-def]
    port = free_port()
    server = HttpServer(App(DataPlane(), max_body), "127.0.0.1", port, Limits())
    await server.start()
    try:
        return await asyncio.to_thread(check, port)
    finally:
        await server.stop()


def _exchange(port: int, raw: bytes, expect: int = 1) -> bytes:
    """Send ``raw``; read until ``expect`` responses came and the server went quiet (or closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        data = b""
        while True:
            s.settimeout(0.5 if data.count(b"HTTP/1.1 ") >= expect else 5)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data


def test_keep_alive_and_pipelining_answer_in_order() -> None:
    raw = (
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"GET /v2 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    data = asyncio.run(_with_server(lambda port: _exchange(port, raw, expect=3)))
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", data)
    assert statuses == [b"200", b"404", b"200"]
    assert data.index(b'{"live":true}') < data.index(b"no endpoint") < data.index(b"modelport")


def test_expect_100_continue_and_chunked_body() -> None:
    raw = (
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    data = asyncio.run(_with_server(lambda port: _exchange(port, raw, expect=2)))
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert b"HTTP/1.1 404 Not Found" in data and b"'m'" in data


def test_malformed_request_is_400_and_closed() -> None:
    data = asyncio.run(_with_server(lambda port: _exchange(port, b"NOT HTTP\r\n\r\n")))
    assert data.startswith(b"HTTP/1.1 400 Bad Request") and b"connection: close" in data


def test_declared_and_streamed_bodies_over_the_limit_are_413() -> None:
    def check(port: int) -> list[httpx.Response]:
        url = f"http://127.0.0.1:{port}/v2/models/m/infer"
        declared = httpx.post(url, content=b"x" * 5000)

        def gen():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"y" * 500

        streamed = httpx.post(url, content=gen())
        ok = httpx.post(url, content=b"{}")
        return [declared, streamed, ok]

    declared, streamed, ok = asyncio.run(_with_server(check))
    assert declared.status_code == 413 and "over the limit of 1000 bytes" in declared.json()["error"]
    assert streamed.status_code == 413
    assert ok.status_code == 404  # under the limit, routed normally


def test_not_ready_without_models() -> None:
    def check(port: int) -> tuple[int, int]:
        base = f"http://127.0.0.1:{port}"
        return httpx.get(f"{base}/v2/health/ready").status_code, httpx.get(f"{base}/ping").status_code

    assert asyncio.run(_with_server(check)) == (503, 503)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v2/health/live", 200), ("DELETE", "/v2", 405), ("GET", "/x", 404)],
)
def test_same_app_under_asgi(method: str, path: str, status: int) -> None:
    async def main() -> int:
        transport = httpx.ASGITransport(app=App(DataPlane(), 1000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.request(method, path)).status_code

    assert asyncio.run(main()) == status


class _Recorder:
    """A transport that records what is written, call by call."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append([data])

    def writelines(self, data: list[bytes]) -> None:
        self.calls.append(list(data))

    def close(self) -> None:
        self.calls.append(["<close>"])  # type: ignore[list-item]

    def is_closing(self) -> bool:
        return False


def test_a_response_head_leaves_with_its_body_in_one_write() -> None:
    from modelport.protocols.httpserver import OneWrite

    async def main() -> tuple[
        list[list[bytes]], list[list[bytes]], list[list[bytes]], list[list[bytes]], bool
    ]:
        loop = asyncio.get_running_loop()
        # A head then its body: one write, head first.
        t = _Recorder()
        w = OneWrite(t, loop)  # type: ignore[arg-type]
        w.write(b"HEAD")
        w.write(b"BODY")
        w.write(b"MORE")  # later chunks go as they come
        await asyncio.sleep(0)
        body = t.calls
        # A head alone (HEAD, or a body still to come): out by the end of this loop iteration.
        t = _Recorder()
        w = OneWrite(t, loop)  # type: ignore[arg-type]
        w.write(b"HEAD")
        held = t.calls[:]
        await asyncio.sleep(0)
        alone = t.calls
        # Closing sends what is held first.
        t = _Recorder()
        w = OneWrite(t, loop)  # type: ignore[arg-type]
        w.write(b"HEAD")
        w.close()
        return body, held, alone, t.calls, w.is_closing()

    body, held, alone, closed, closing = asyncio.run(main())
    assert body == [[b"HEAD", b"BODY"], [b"MORE"]]
    assert held == [] and alone == [[b"HEAD"]]  # held at first, written before the next iteration
    assert closed == [[b"HEAD"], ["<close>"]]
    assert closing is False  # anything else is the transport's
