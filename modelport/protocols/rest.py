"""The HTTP front: one small ASGI app routing to the V2, V1 and MLflow scoring adapters.

Errors of every kind are turned into responses here, in one place, from the code
tables in ``modelport.errors``; handlers just raise. Here too: the body limit (checked
on the headers), request body decoding (gzip, deflate), request ids, the access log
and the request metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from typing import Any

from modelport import logs, metrics
from modelport.dataplane import DataPlane
from modelport.errors import (
    HTTP_STATUS,
    InvalidInput,
    MethodNotAllowed,
    ModelNotFound,
    ModelNotReady,
    ModelportError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from modelport.protocols import scoring, v1, v2, v2_repository
from modelport.protocols.messages import Handler, HttpRequest, HttpResponse

log = logging.getLogger("modelport.http")

# Bodies larger than this are inflated off the event loop (zlib releases the GIL).
_INFLATE_IN_THREAD = 1 << 20
_CLOSE = {"connection": "close"}
# Statuses after which the connection is closed: the rest of the request may still be arriving.
_CLOSE_AFTER = frozenset({408, 413})
_READINESS = frozenset({"/v2/health/ready", "/ping", "/health"})


def route(method: str, path: str) -> tuple[Handler, dict[str, Any]]:
    """Map a method and path to a handler and its path parameters (HEAD is GET without a body)."""
    if method == "HEAD":
        method = "GET"
    static = STATIC_ROUTES.get(path)
    if static is not None:
        handler = static.get(method)
        if handler is None:
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        return handler, {}
    if path.startswith("/v2/models/"):
        return v2.route(method, path[len("/v2/models/") :])
    if path.startswith("/v1/models/"):
        return v1.route(method, path[len("/v1/models/") :])
    if path.startswith(v2_repository.PREFIX):
        return v2_repository.route(method, path[len(v2_repository.PREFIX) :])
    raise ModelNotFound(f"no endpoint at {path}")


async def _metrics(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, metrics.exposition(), metrics.CONTENT_TYPE)


STATIC_ROUTES: dict[str, dict[str, Handler]] = {
    "/": {"GET": v1.root},
    "/v2": {"GET": v2.server_metadata},
    "/v2/health/live": {"GET": v2.live},
    "/v2/health/ready": {"GET": v2.ready},
    "/v2/repository/index": {"POST": v2_repository.index},
    "/v1/models": {"GET": v1.list_models},
    "/invocations": {"POST": scoring.invocations},
    "/ping": {"GET": scoring.ping},
    "/health": {"GET": scoring.ping},
    "/version": {"GET": scoring.version},
    "/metrics": {"GET": _metrics},
}


def allowed_methods(path: str) -> str:
    """The Allow header of a 405: the methods that route on this path."""
    allowed = []
    for method in ("GET", "POST"):
        try:
            route(method, path)
        except ModelportError:
            continue
        allowed.append(method)
    if "GET" in allowed:
        allowed.insert(1, "HEAD")
    return ", ".join(allowed)


def error_response(path: str, exc: ModelportError) -> HttpResponse:
    """The one place an error becomes an HTTP response: the status from ``HTTP_STATUS`` (or
    MLflow's own, for an error of MLflow's scoring code), MLflow's shapes on /invocations."""
    status = scoring.mlflow_status(exc) or HTTP_STATUS.get(exc.code, 500)
    headers = dict(_CLOSE) if status in _CLOSE_AFTER else {}
    if isinstance(exc, MethodNotAllowed):
        headers["allow"] = allowed_methods(path)
    elif path == "/invocations":
        return scoring.error_response(status, exc, headers)
    return HttpResponse(status, v2.encode_json({"error": exc.message}), headers=headers)


class ClientGone(Exception):
    """The client disconnected before its request was read whole: nothing to answer."""


class App:
    """ASGI application; ``max_body`` bytes is the largest request body read (after decompression)."""

    def __init__(self, dataplane: DataPlane, max_body: int) -> None:
        self.dataplane = dataplane
        self.max_body = max_body
        self.draining = False  # set on SIGTERM: readiness answers 503 while the server drains
        self._labels: dict[tuple[str, str], tuple[Any, Any]] = {}

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> HttpResponse:
        """Answer one request; every error becomes a response here."""
        try:
            if self.draining and path in _READINESS:
                raise ModelNotReady("the server is shutting down")
            handler, params = route(method, path)
            return await handler(self.dataplane, HttpRequest(method, path, headers, body), params)
        except ModelportError as exc:
            return error_response(path, exc)
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            return HttpResponse(500, v2.encode_json({"error": "internal server error; see the server log"}))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point: uvicorn in production, httpx's ASGITransport in tests."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/") or "/"  # /v2/ is /v2, as the spec spells it
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = logs.request_id_from(headers.get("x-request-id"))
        model, protocol = self._classify(path)
        token = logs.bind(request_id, model)
        try:
            try:
                body = await self._read_body(headers, receive)
            except ModelportError as exc:
                response = error_response(path, exc)
            else:
                response = await self.handle(method, path, headers, body)
            response.headers["x-request-id"] = request_id
            await _send(send, response)
            seconds = time.perf_counter() - started
            self._observe(model, protocol, response.status, seconds)
            logs.access(method, path, response.status, seconds, request_id, scope.get("client"))
        except ClientGone:
            self._observe(model, protocol, 499, time.perf_counter() - started)
        finally:
            logs.unbind(token)

    # --- bodies ---------------------------------------------------------------------------

    async def _read_body(self, headers: dict[str, str], receive: Any) -> bytes:
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError as exc:
                raise InvalidInput(f"Content-Length is not a number: {declared!r}") from exc
            if size > self.max_body:
                raise PayloadTooLarge(too_large(size, self.max_body))
        encodings = _encodings(headers.get("content-encoding"))
        chunks = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            total += len(chunk)
            if total > self.max_body:
                raise PayloadTooLarge(too_large(total, self.max_body))
            chunks.append(chunk)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if encodings and body:
            if len(body) > _INFLATE_IN_THREAD:
                return await asyncio.to_thread(inflate, body, encodings, self.max_body)
            return inflate(body, encodings, self.max_body)
        return body

    # --- metrics --------------------------------------------------------------------------

    def _classify(self, path: str) -> tuple[str, str]:
        """(model, protocol) labels; a model not served here is "" so clients cannot grow the label set."""
        if path.startswith("/v2/models/"):
            name, protocol = path[11:].partition("/")[0], "v2"
        elif path.startswith("/v1/models/"):
            name, protocol = path[11:].partition(":")[0], "v1"
        elif path == "/invocations":
            models = self.dataplane.models
            return (next(iter(models)) if len(models) == 1 else ""), "mlflow"
        else:
            return "", "other"
        return (name if name in self.dataplane.models else ""), protocol

    def _observe(self, model: str, protocol: str, status: int, seconds: float) -> None:
        children = self._labels.get((model, protocol))
        if children is None:
            children = (
                metrics.REQUEST_SECONDS.labels(model, protocol),
                {},
            )
            self._labels[(model, protocol)] = children
        histogram, counters = children
        counter = counters.get(status)
        if counter is None:
            counter = counters[status] = metrics.REQUESTS.labels(model, protocol, str(status))
        counter.inc()
        histogram.observe(seconds)


def _encodings(header: str | None) -> list[str]:
    """Content codings to undo, in the order applied; 415 for one this server does not read."""
    if not header:
        return []
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate", "identity")]
    if unknown:
        raise UnsupportedMediaType(
            f"Content-Encoding {', '.join(unknown)} is not supported; send gzip, deflate or identity"
        )
    return [c for c in codings if c != "identity"]


def inflate(body: bytes, encodings: list[str], limit: int) -> bytes:
    """Undo gzip/deflate codings; the inflated size counts against the body limit (zip bombs get 413)."""
    for coding in reversed(encodings):
        # 32 + MAX_WBITS reads a gzip or a zlib header; "deflate" is sometimes sent raw, without one.
        out, complete = _inflate(body, 32 + zlib.MAX_WBITS, limit)
        if out is None and coding == "deflate":
            out, complete = _inflate(body, -zlib.MAX_WBITS, limit)
        if out is None or not complete:
            raise InvalidInput(f"the request body is not valid {coding} data (corrupt or truncated)")
        if len(out) > limit:
            raise PayloadTooLarge(
                f"the request body inflates to over the limit of {limit} bytes (--max-body-bytes)"
            )
        body = out
    return body


def _inflate(data: bytes, wbits: int, limit: int) -> tuple[bytes | None, bool]:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        return None, False
    return out, inflater.eof or len(out) > limit


async def _send(send: Any, response: HttpResponse) -> None:
    raw_headers = [
        (b"content-type", response.content_type),
        (b"content-length", b"%d" % len(response.body)),
    ]
    raw_headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items())
    await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def too_large(size: int, limit: int) -> str:
    return f"request body of {size} bytes is over the limit of {limit} bytes (--max-body-bytes)"


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
