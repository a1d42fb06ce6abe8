"""A small HTTP/1.1 server on asyncio + httptools that calls ``App.handle`` directly.

Why not uvicorn: under load uvicorn spent over a third of the front's CPU in its ASGI
send path (two socket writes per response, a task and message dicts per request); this
server writes each response in one call (docs/decisions.md has the figures). It speaks
keep-alive, pipelining (answered in order), chunked request bodies, ``Expect:
100-continue`` and a body limit that answers 413 without buffering the excess.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools
import msgspec

from modelport.errors import PayloadTooLarge
from modelport.protocols.messages import HttpResponse
from modelport.protocols.rest import App, error_response, too_large

log = logging.getLogger("modelport.http")

MAX_PIPELINED = 64
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def render(response: HttpResponse, keep_alive: bool) -> bytes:
    head = [
        b"HTTP/1.1 %d %s\r\n" % (response.status, REASONS.get(response.status, b"Unknown")),
        b"content-type: %s\r\ncontent-length: %d\r\n" % (response.content_type, len(response.body)),
    ]
    for k, v in response.headers.items():
        head.append(f"{k}: {v}\r\n".encode("latin-1"))
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    head.append(response.body)
    return b"".join(head)


class Pending:
    __slots__ = ("method", "path", "headers", "body", "keep_alive", "error")

    def __init__(
        self, method: str, path: str, headers: dict[str, str], body: bytes, keep_alive: bool, error: Any
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.error = error


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: App, connections: set[HttpProtocol]) -> None:
        self.app = app
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Pending] = deque()
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large: int | None = None

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")

    # --- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.app.max_body:
            self.too_large = int(declared)
        elif self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.too_large is None and self.size > self.app.max_body:
            self.too_large = self.size
            self.chunks = []
        if self.too_large is None:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        path = unquote(parsed.path.decode("latin-1"))
        error = None
        if self.too_large is not None:
            error = PayloadTooLarge(too_large(self.too_large, self.app.max_body))
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        method = self.parser.get_method().decode("latin-1")
        self.queue.append(Pending(method, path, self.headers, body, self.parser.should_keep_alive(), error))
        self._reset()
        if len(self.queue) > MAX_PIPELINED and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve())

    # --- answering ---------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while self.queue:
                req = self.queue.popleft()
                if req.error is not None:
                    response = error_response(req.path, req.error)
                    req.keep_alive = False  # the rest of an oversized body may still be arriving
                else:
                    response = await self.app.handle(req.method, req.path, req.headers, req.body)
                if self.transport is None:
                    return
                self.transport.write(render(response, req.keep_alive))
                if not req.keep_alive:
                    self.transport.close()
                    return
                if self.paused and len(self.queue) <= MAX_PIPELINED // 2:
                    self.paused = False
                    self.transport.resume_reading()
        finally:
            self.task = None

    def _fail(self, status: int, message: str) -> None:
        if self.transport is not None:
            body = msgspec.json.encode({"error": message})
            self.transport.write(render(HttpResponse(status, body), keep_alive=False))
            self.transport.close()

    @property
    def idle(self) -> bool:
        return self.task is None and not self.queue

    def close_if_idle(self) -> None:
        if self.idle and self.transport is not None:
            self.transport.close()


class HttpServer:
    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.connections: set[HttpProtocol] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self.app, self.connections),
            self.host,
            self.port,
            backlog=2048,
            reuse_address=True,
        )
        log.info("listening on http://%s:%d", self.host, self.port)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish (up to ``grace`` s), close the rest."""
        if self._server is not None:
            self._server.close()
        deadline = asyncio.get_running_loop().time() + grace
        while any(not c.idle for c in self.connections) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for c in list(self.connections):
            if c.transport is not None:
                c.transport.close()
