"""Hostile clients for `hostile_probe.py`: slow request heads, readiness probes, an endless header.

Standard library asyncio only, 127.0.0.1 only; every loop is bounded in time and count.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"
# Half a request head: the request line and a header whose value never ends.
SLOW_HEAD = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: "
ENDLESS_HEAD = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-A: "
CHUNK = b"a" * 65536


@dataclass
class Probe:
    started: float  # seconds since the series began
    latency_s: float
    status: int | None
    error: str = ""

    def ok(self, limit_s: float) -> bool:
        return self.status == 200 and not self.error and self.latency_s <= limit_s


def request_bytes(method: str, path: str, body: bytes | None = None, keep_alive: bool = False) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if not keep_alive:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode() + (body or b"")


async def probe(port: int, path: str, timeout: float, origin: float, body: bytes | None = None) -> Probe:
    """One GET (a POST with `body`) on a fresh connection, timed from connect to the end of the status line."""
    t0 = time.perf_counter()
    opened: list[asyncio.StreamWriter] = []

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection(HOST, port)
        opened.append(writer)
        writer.write(request_bytes("GET" if body is None else "POST", path, body))
        return await reader.readline()

    try:
        line = await asyncio.wait_for(ask(), timeout)
        latency = time.perf_counter() - t0
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            return Probe(
                t0 - origin, latency, None, "closed without a status line" if not line else "bad reply"
            )
        return Probe(t0 - origin, latency, int(parts[1]))
    except asyncio.TimeoutError:
        return Probe(t0 - origin, time.perf_counter() - t0, None, f"no answer in {timeout:g} s")
    except OSError as exc:
        return Probe(t0 - origin, time.perf_counter() - t0, None, type(exc).__name__)
    finally:
        for writer in opened:
            writer.close()


async def probe_series(
    port: int, path: str, seconds: float, every: float, timeout: float, body: bytes | None = None
) -> list[Probe]:
    """A probe every `every` s for `seconds` s, each on its own task so a hung one delays none after it."""
    origin = time.perf_counter()
    tasks = []
    for i in range(max(1, int(seconds / every))):
        delay = origin + i * every - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(probe(port, path, timeout, origin, body)))
    return list(await asyncio.gather(*tasks))


async def idle_keep_alive(port: int, path: str, limit_s: float) -> float | None:
    """Seconds until the server closes a keep-alive connection left idle after one answered GET; None if
    it was still open after `limit_s` s (or the first answer never came)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10.0)
    try:
        writer.write(request_bytes("GET", path, keep_alive=True))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        await asyncio.wait_for(reader.readexactly(length), 5.0)
        idle_from = time.perf_counter()
        deadline = idle_from + limit_s
        while (left := deadline - time.perf_counter()) > 0:
            try:
                if not await asyncio.wait_for(reader.read(4096), left):
                    return time.perf_counter() - idle_from
            except asyncio.TimeoutError:  # before OSError: on 3.11+ TimeoutError is an OSError
                return None
            except OSError:
                return time.perf_counter() - idle_from
        return None
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    finally:
        writer.close()


async def early_413(port: int, path: str, wait_s: float) -> str:
    """Declare a 10 GB body and send none of it: does the server answer (413) before the body?"""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10.0)
    t0 = time.perf_counter()
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Content-Length: 10000000000\r\n\r\n".encode()
        )
        line = await asyncio.wait_for(reader.readline(), wait_s)
    except asyncio.TimeoutError:
        return f"no answer in {wait_s:g} s"
    except OSError as exc:
        return type(exc).__name__
    finally:
        writer.close()
    parts = line.split()
    status = parts[1].decode() if len(parts) > 1 else "closed, no status"
    return f"{status} after {(time.perf_counter() - t0) * 1000:.0f} ms"


@dataclass
class ProbeSummary:
    count: int
    failed: int
    p50_ms: float | None
    max_ms: float | None
    reasons: str  # e.g. "3× no answer in 5 s, 2× HTTP 503"


def summarize(probes: list[Probe], limit_s: float) -> ProbeSummary:
    answered = [p.latency_s * 1000 for p in probes if p.status is not None]
    bad = [p for p in probes if not p.ok(limit_s)]
    why: Counter[str] = Counter()
    for p in bad:
        if p.error:
            why[p.error] += 1
        elif p.status != 200:
            why[f"HTTP {p.status}"] += 1
        else:
            why[f"over {limit_s:g} s"] += 1
    return ProbeSummary(
        count=len(probes),
        failed=len(bad),
        p50_ms=statistics.median(answered) if answered else None,
        max_ms=max(p.latency_s * 1000 for p in probes) if probes else None,
        reasons=", ".join(f"{n}× {w}" for w, n in why.most_common())
        + (
            f" (sent {min(p.started for p in bad):.1f}–{max(p.started for p in bad):.1f} s in)" if bad else ""
        ),
    )


@dataclass
class SlowClient:
    connected_at: float | None = None
    connect_error: str = ""
    closed_after_s: float | None = None  # since it connected, when the server ended the connection
    reply: str = ""  # the status line the server sent before closing, if any
    reset: bool = False


async def slow_client(
    port: int, client: SlowClient, gate: asyncio.Semaphore, trickle_s: float, connected: asyncio.Event
) -> None:
    """Send half a head, then one more byte of the same header value every `trickle_s` s, never finishing."""
    writer = None
    try:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10.0)
                writer.write(SLOW_HEAD)
                client.connected_at = time.perf_counter()
            except (OSError, asyncio.TimeoutError) as exc:
                client.connect_error = type(exc).__name__
                return
            finally:
                connected.set()
        wait = random.uniform(0.1, trickle_s)  # spread the trickles over the interval
        while True:
            try:
                data = await asyncio.wait_for(reader.read(4096), wait)
            except asyncio.TimeoutError:
                writer.write(b"a")
                wait = trickle_s
                continue
            except OSError:
                client.reset = True
                data = b""
            if data and not client.reply:
                client.reply = data.split(b"\r\n", 1)[0].decode("latin-1")[:40]
            if not data:
                client.closed_after_s = time.perf_counter() - client.connected_at
                return
    finally:
        if writer is not None:
            writer.close()


@dataclass
class SlowResult:
    clients: list[SlowClient]
    open_s: float
    probes: list[Probe]
    infers: list[Probe] = field(default_factory=list)  # real requests sent while the slow clients hold on
    held: object = None  # what `while_held` returned, with every slow client still connected

    @property
    def connected(self) -> int:
        return sum(c.connected_at is not None for c in self.clients)

    def closed_by_server(self) -> list[SlowClient]:
        return [c for c in self.clients if c.closed_after_s is not None]

    def closes(self) -> str:
        """How the server ended slow connections: '1000 after 10.0–10.3 s, 408' or 'none'."""
        closed = self.closed_by_server()
        if not closed:
            return "none"
        after = [c.closed_after_s or 0.0 for c in closed]
        replies = Counter(c.reply.split(" ", 2)[1] if c.reply.count(" ") else "no reply" for c in closed)
        how = ", ".join(f"{r}×{n}" if len(replies) > 1 else r for r, n in replies.most_common())
        return f"{len(closed)} after {min(after):.1f}–{max(after):.1f} s ({how})"


async def slow_clients_attack(
    port: int,
    path: str,
    count: int,
    seconds: float,
    every: float,
    timeout: float,
    trickle_s: float,
    infer: tuple[str, bytes] | None = None,
    while_held: Callable[[], object] = lambda: None,
) -> SlowResult:
    """Open `count` slow clients (100 connects at a time), then probe readiness (and, with `infer`, send
    one real request a second) while they hang on."""
    clients = [SlowClient() for _ in range(count)]
    gate = asyncio.Semaphore(100)
    events = [asyncio.Event() for _ in clients]
    t0 = time.perf_counter()
    tasks = [
        asyncio.create_task(slow_client(port, c, gate, trickle_s, e))
        for c, e in zip(clients, events, strict=True)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 30.0)
    except asyncio.TimeoutError:
        pass
    open_s = time.perf_counter() - t0
    try:
        series = [probe_series(port, path, seconds, every, timeout)]
        if infer is not None:
            series.append(probe_series(port, infer[0], seconds, 1.0, timeout, infer[1]))
        probes, *infers = await asyncio.gather(*series)
        held = while_held()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return SlowResult(clients, open_s, probes, infers[0] if infers else [], held)


@dataclass
class EndlessResult:
    sent_bytes: int = 0
    seconds: float = 0.0
    closed_at_s: float | None = None  # when the server closed or reset the connection
    reply: str = ""
    stalled_at_s: float | None = None  # when the server stopped taking bytes without closing
    stopped_by_cap: bool = False
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    def outcome(self) -> str:
        if self.closed_at_s is not None:
            status = self.reply.split(" ", 2)[1] if self.reply.count(" ") else "no reply"
            return f"closed at {self.closed_at_s:.2f} s ({status})"
        if self.stopped_by_cap:
            return "never closed; stopped by the probe's byte cap"
        if self.stalled_at_s is not None:
            return f"stopped reading at {self.stalled_at_s:.1f} s, never closed"
        return "never closed"


async def _read_reply(reader: asyncio.StreamReader, result: EndlessResult, t0: float) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if data and not result.reply:
                result.reply = data.split(b"\r\n", 1)[0].decode("latin-1")[:40]
            if not data:
                break
    except OSError:
        pass
    if result.closed_at_s is None:
        result.closed_at_s = time.perf_counter() - t0


async def endless_header_attack(
    port: int, seconds: float, max_bytes: int, rss_mb: Callable[[], float]
) -> EndlessResult:
    """Stream one header value as fast as the server takes it, for `seconds` s or `max_bytes` bytes."""
    result = EndlessResult(peak_rss_mb=rss_mb())
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10.0)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    replies = asyncio.create_task(_read_reply(reader, result, t0))

    async def sample() -> None:
        while True:
            result.peak_rss_mb = max(result.peak_rss_mb, rss_mb())
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    try:
        writer.write(ENDLESS_HEAD)
        while not replies.done():
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            if result.sent_bytes >= max_bytes:
                result.stopped_by_cap = True
                break
            writer.write(CHUNK)
            try:
                await asyncio.wait_for(writer.drain(), left)
            except asyncio.TimeoutError:
                if result.seconds < seconds - 1.0:  # no progress for the last second or more
                    result.stalled_at_s = result.seconds
                break
            except OSError as exc:
                result.notes.append(type(exc).__name__)
                result.closed_at_s = time.perf_counter() - t0
                break
            result.sent_bytes += len(CHUNK)
            result.seconds = time.perf_counter() - t0
        if not replies.done():
            # A reply may be on its way (the write side can fail before the read side sees it).
            await asyncio.wait([replies], timeout=0.5)
    finally:
        sampler.cancel()
        replies.cancel()
        await asyncio.gather(sampler, replies, return_exceptions=True)
        writer.close()
    result.peak_rss_mb = max(result.peak_rss_mb, rss_mb())
    return result
