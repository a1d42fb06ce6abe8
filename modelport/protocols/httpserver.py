"""The HTTP/1.1 front: uvicorn (httptools) with the protections it lacks, added as one thin protocol subclass.

uvicorn gives keep-alive, pipelining, write backpressure (reading pauses while a response
waits for the client) and a graceful shutdown. This adds what a hostile client needs:
a cap on the request head (431, or 414 for the URL), a header-read timeout and a body-read
timeout (408), a connection cap that makes room by closing an idle keep-alive connection
or the one whose head has been arriving longest (a slow client), and keeps a few slots for
health probes, answers to pipelined requests in order before any 400,
and a drain that tells clients ``Connection: close`` (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import httptools
import msgspec
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("modelport.http")

# Paths a connection over the cap may still use: kubelet probes must not be locked out.
PROBE_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/ping", "/health", "/metrics", "/"})
# After SIGTERM an idle connection is closed this long later, so a request already on the wire is answered.
DRAIN_GRACE_S = 0.05
# Pipelined requests queued on one connection before it stops reading more.
MAX_QUEUED = 16
# At the connection cap, a connection still waiting for its request head this long is slow:
# it is closed (408) to make room. A real client sends its head in one packet.
SLOW_HEAD_S = 1.0


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    max_connections: int = 1000

    @property
    def probe_slots(self) -> int:
        """Connections allowed past the cap, for health probes only."""
        return max(32, self.max_connections // 10)


class PipelineFlow(FlowControl):
    """uvicorn resumes reading after every response; with requests still queued that lets a
    client that pipelines without reading queue thousands more per response. Resume only
    once the queue is short."""

    def __init__(self, transport: asyncio.Transport, pipeline: deque[Any]) -> None:
        super().__init__(transport)
        self.pipeline = pipeline

    def resume_reading(self) -> None:
        if len(self.pipeline) <= MAX_QUEUED:
            super().resume_reading()


class OneWrite:
    """The transport as one response's cycle sees it: the head uvicorn writes is held until the
    body's first bytes, and both leave in one write. Two writes cost the front a second loopback
    TCP send and the client a second wake-up (about 25 µs of a 0.5 ms iris request). Held at most
    until the end of this event-loop iteration, so a response without body bytes (HEAD) or one
    whose body comes later is not delayed."""

    __slots__ = ("transport", "loop", "held", "first")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None
        self.first = True

    def write(self, data: bytes) -> None:
        if self.first:
            self.first = False
            self.held = data
            self.loop.call_soon(self.flush)
        elif self.held is not None:
            self.transport.writelines((self.held, data))
            self.held = None
        else:
            self.transport.write(data)

    def flush(self) -> None:
        self.first = False
        if self.held is not None:
            self.transport.write(self.held)
            self.held = None

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HeadTooLarge(Exception):
    """Raised from the parser's callback to stop parsing a head over the cap."""


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits, read timeouts, a connection cap and a drain."""

    def __init__(
        self,
        *args: Any,
        limits: Limits,
        overflow: dict[Any, None],
        heads: dict[Any, float],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        # Shared by the server's connections: those past the cap, and those waiting for a request
        # head with when they began waiting, both oldest first.
        self.overflow = overflow
        self.heads = heads
        self.in_head = False  # a request head has begun and is not complete
        self.head_bytes = 0
        self.fed_body = 0
        self.deferred: tuple[int, str] | None = None  # an error to answer after earlier pipelined requests
        self.draining = False
        self.running: Any = None  # the cycle being answered (uvicorn's self.cycle is the newest)
        self.oversized: tuple[int, int] | None = None  # (URL bytes, head bytes) of a head over the cap
        self.read_timer: asyncio.TimerHandle | None = None
        self.last_read = 0.0

    # --- connections ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = PipelineFlow(transport, self.pipeline)
        self._arm_read_timer()
        self.heads[self] = self.loop.time()
        if (
            len(self.connections) <= self.limits.max_connections
            or _evict_idle(self.connections, self)
            or self._evict_slow()
        ):
            return
        # Over the cap: this connection may only ask for a probe. When those slots are full, the
        # oldest still sending its head goes (a probe sends its head at once; a slow client does not).
        overflow = self.overflow
        if len(overflow) >= self.limits.probe_slots:
            slow = next(
                (c for c in overflow if (c.in_head or c.cycle is None) and not c.transport.is_closing()), None
            )
            if slow is None:
                log.warning(
                    "connection refused: %d connections open (--max-connections)", len(self.connections)
                )
                self._reply_and_close(503, "too many connections (--max-connections); try again later")
                return
            slow._reply_and_close(503, "too many connections (--max-connections); try again later")
            overflow.pop(slow, None)
        overflow[self] = None
        self.app = _probes_only(self.app)

    def _evict_slow(self) -> bool:
        """Close the connection that has waited longest for its head, if that is long; False if none."""
        oldest = next(iter(self.heads.items()), None)
        if oldest is None or oldest[0] is self or self.loop.time() - oldest[1] < SLOW_HEAD_S:
            return False
        slow = oldest[0]
        slow._reply_and_close(
            408, "the request head was too slow to arrive with the server full (--max-connections)"
        )
        self.heads.pop(slow, None)
        self.overflow.pop(slow, None)
        self.connections.discard(slow)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        self.overflow.pop(self, None)
        self.heads.pop(self, None)
        self._disconnect_cycles()
        super().connection_lost(exc)

    @property
    def idle(self) -> bool:
        """Between requests: nothing of a next request read, nothing being answered."""
        return (self.cycle is None or self.cycle.response_complete) and not self.in_head and not self.pipeline

    # --- reading ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self.last_read = self.loop.time()
        self.fed_body = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
        except httptools.HttpParserCallbackError:
            if self.oversized is None:
                raise
            self._refuse_head(*self.oversized)
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc}")
            return
        if self.in_head and not self.transport.is_closing():
            # A head still arriving. Body bytes of an earlier request in the same read are not head.
            self.head_bytes += len(data) - self.fed_body
            if self.head_bytes > self.limits.max_header_bytes:
                self._refuse_head(len(self.url), self.head_bytes)
        elif self.cycle is not None and self.cycle.more_body:
            self._arm_read_timer()  # a body split across reads: time out a client that stops sending

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.running = cycle
        super()._start_asgi_task(cycle, app)

    def _disconnect_cycles(self) -> None:
        # uvicorn marks only the newest cycle disconnected; with pipelining the one running (and
        # those queued) would then write to a closed transport.
        for cycle in (self.running, self.cycle, *(c for c, _ in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.heads.setdefault(self, self.loop.time())
        self.in_head = True
        self.head_bytes = 0
        self._arm_read_timer()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.heads.pop(self, None)
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.limits.max_header_bytes:  # a whole head that arrived in one read
            self.oversized = (len(self.url), size)
            raise HeadTooLarge()
        super().on_headers_complete()
        self.cycle.transport = cast(asyncio.Transport, OneWrite(self.transport, self.loop))
        if self.draining:
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.fed_body += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_read_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.deferred is not None and not self.pipeline and self.cycle.response_complete:
            status, message = self.deferred
            self._reply_and_close(status, message)

    # --- timeouts ---------------------------------------------------------------------

    def _arm_read_timer(self) -> None:
        if self.read_timer is None:
            self.last_read = self.loop.time()
            self.read_timer = self.loop.call_later(self.limits.header_timeout_s, self._read_timeout)

    def _cancel_read_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timeout(self) -> None:
        self.read_timer = None
        if self.transport.is_closing():
            return
        reading_body = self.cycle is not None and self.cycle.more_body and not self.in_head
        if reading_body:
            waited = self.loop.time() - self.last_read
            if waited < self.limits.header_timeout_s:  # data arrived meanwhile: wait from the last read
                self.read_timer = self.loop.call_later(
                    self.limits.header_timeout_s - waited, self._read_timeout
                )
                return
            self._reply_and_close(408, "the request body stopped arriving (--header-timeout)")
        elif self.cycle is None or self.cycle.response_complete:
            if self.in_head:
                self._reply_and_close(408, "the request head was not received in time (--header-timeout)")
            else:
                self.transport.close()  # connected and said nothing

    # --- answers outside the app ----------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        earlier_pending = (
            self.cycle is not None and not self.cycle.response_complete and not self.cycle.more_body
        )
        if earlier_pending or self.pipeline:
            # Earlier pipelined requests are answered first, in order; then this error, then close.
            self.deferred = (status, message)
            self.flow.pause_reading()
            return
        self._reply_and_close(status, message)

    def _refuse_head(self, url_bytes: int, head_bytes: int) -> None:
        limit = self.limits.max_header_bytes
        if url_bytes * 2 > head_bytes:
            self._refuse(414, f"request URL over {limit} bytes (--max-header-bytes)")
        else:
            self._refuse(431, f"request head over {limit} bytes (--max-header-bytes)")

    def _reply_and_close(self, status: int, message: str) -> None:
        log.info("closing a connection: %d %s", status, message)
        if self.transport.is_closing():
            return
        self._disconnect_cycles()
        body = msgspec.json.encode({"error": message})
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                    % len(body),
                    body,
                ]
            )
        )
        self.transport.close()

    # --- drain ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """SIGTERM: the request being answered (or already arriving) is the last; idle ones close."""
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # the last pipelined cycle: earlier ones are still answered
        else:
            self.loop.call_later(DRAIN_GRACE_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.idle and not self.transport.is_closing():
            self.transport.close()


def _evict_idle(connections: set[Any], newcomer: Any) -> bool:
    """Close one idle keep-alive connection to make room; False if none is idle."""
    for conn in connections:
        if (
            conn is not newcomer
            and isinstance(conn, GuardedProtocol)
            and conn.idle
            and conn.cycle is not None
        ):
            conn.transport.close()
            connections.discard(conn)
            return True
    return False


def _probes_only(app: Any) -> Any:
    async def probes_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path") in PROBE_PATHS:
            await app(scope, receive, send)
            return
        body = b'{"error":"too many connections (--max-connections); try again later"}'
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return probes_only


class HttpServer:
    """Runs an ASGI app under uvicorn inside the caller's event loop (signals are the caller's)."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        limits: Limits,
        keep_alive_timeout_s: float = 120.0,
        graceful_timeout_s: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        protocol = functools.partial(GuardedProtocol, limits=limits, overflow={}, heads={})
        self.config = uvicorn.Config(
            app,
            http=cast(Any, protocol),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=max(1, round(keep_alive_timeout_s)),
            timeout_graceful_shutdown=max(1, round(graceful_timeout_s)),
            backlog=2048,
        )
        self.server = uvicorn.Server(self.config)
        self._main: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (an OSError here is the caller's to report) and start answering."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._socket = sock
        # What uvicorn.Server.serve() does before startup(), minus taking over the signals.
        self.config.load()
        self.server.lifespan = self.config.lifespan_class(self.config)
        await self.server.startup(sockets=[sock])
        self.port = sock.getsockname()[1]
        self._main = asyncio.create_task(self.server.main_loop())
        log.info("listening on http://%s:%d", self.host, self.port)

    @property
    def connections(self) -> set[Any]:
        return self.server.server_state.connections

    async def stop(self) -> None:
        """Stop accepting, answer what was received (Connection: close), close idle connections, return."""
        self.server.should_exit = True
        if self._main is not None:
            await self._main
        await self.server.shutdown(sockets=[self._socket])
