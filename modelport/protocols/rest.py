"""The HTTP front: one small ASGI app routing to the V2, V1 and MLflow scoring adapters.

Errors of every kind are turned into responses here, in one place, from the code
tables in ``modelport.errors``; handlers just raise.
"""

from __future__ import annotations

import logging
from typing import Any

from modelport.dataplane import DataPlane
from modelport.errors import HTTP_STATUS, InvalidInput, ModelNotFound, ModelportError, PayloadTooLarge
from modelport.protocols import scoring, v1, v2
from modelport.protocols.messages import Handler, HttpRequest, HttpResponse, MethodNotAllowed

log = logging.getLogger("modelport.http")


def route(method: str, path: str) -> tuple[Handler, dict[str, Any]]:
    """Map a method and path to a handler and its path parameters."""
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
    raise ModelNotFound(f"no endpoint at {path}")


STATIC_ROUTES: dict[str, dict[str, Handler]] = {
    "/": {"GET": v1.root},
    "/v2": {"GET": v2.server_metadata},
    "/v2/health/live": {"GET": v2.live},
    "/v2/health/ready": {"GET": v2.ready},
    "/v1/models": {"GET": v1.list_models},
    "/invocations": {"POST": scoring.invocations},
    "/ping": {"GET": scoring.ping},
    "/health": {"GET": scoring.ping},
    "/version": {"GET": scoring.version},
}


def error_response(path: str, exc: ModelportError) -> HttpResponse:
    status = HTTP_STATUS.get(exc.code, 500)
    if path == "/invocations":
        body = {"error_code": scoring.MLFLOW_CODES.get(status, "INTERNAL_ERROR"), "message": exc.message}
    else:
        body = {"error": exc.message}
    return HttpResponse(status, v2.encode_json(body))


class App:
    """ASGI application; ``max_body`` bytes is the largest request body read."""

    def __init__(self, dataplane: DataPlane, max_body: int) -> None:
        self.dataplane = dataplane
        self.max_body = max_body

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> HttpResponse:
        """Answer one request; every error becomes a response here."""
        try:
            handler, params = route(method, path)
            return await handler(self.dataplane, HttpRequest(method, path, headers, body), params)
        except ModelportError as exc:
            return error_response(path, exc)
        except MethodNotAllowed as exc:
            return HttpResponse(405, v2.encode_json({"error": str(exc)}))
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            return HttpResponse(500, v2.encode_json({"error": "internal server error; see the server log"}))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point, so the same app runs under any ASGI server (and httpx in tests)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(headers, receive)
        except ModelportError as exc:
            response = error_response(path, exc)
        else:
            response = await self.handle(scope["method"], path, headers, body)
        raw_headers = [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
        ]
        raw_headers.extend((k.encode(), v.encode()) for k, v in response.headers.items())
        await send({"type": "http.response.start", "status": response.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _read_body(self, headers: dict[str, str], receive: Any) -> bytes:
        declared = headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError as exc:
                raise InvalidInput(f"Content-Length is not a number: {declared!r}") from exc
            if size > self.max_body:
                raise PayloadTooLarge(too_large(size, self.max_body))
        message = await receive()
        body = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks = [body]
        total = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                raise PayloadTooLarge(too_large(total, self.max_body))
            chunks.append(chunk)
        return b"".join(chunks)


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
