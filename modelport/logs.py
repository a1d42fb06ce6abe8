"""Logging for the server: one stderr handler, text or JSON lines, stamped with the current request.

The request id and model live in a context variable, so each asyncio task (and each thread that
``asyncio.to_thread`` starts) carries its own; formatters read it when a line is written.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import sys
import time
from typing import Any, TextIO

import msgspec

__all__ = [
    "ACCESS_LOGGER",
    "JsonFormatter",
    "RequestContext",
    "TextFormatter",
    "access",
    "access_enabled",
    "bind",
    "configure",
    "current",
    "new_request_id",
    "request_context",
    "request_id_from",
    "unbind",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = logging.getLogger("modelport.access")
# uvicorn logs through these when it runs with log_config=None; they propagate to our handler.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")

# ---------------------------------------------------------------------------------------------
# The request context: one tuple in one context variable, so entering a request is one set().

_Context = tuple[str | None, str | None]  # (request_id, model)
_REQUEST: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("modelport_request", default=None)
_Token = contextvars.Token


def bind(request_id: str | None, model: str | None = None) -> _Token[_Context | None]:
    """Make ``request_id``/``model`` current for this task; pass the token to ``unbind``."""
    return _REQUEST.set((request_id, model))


def unbind(token: _Token[_Context | None]) -> None:
    _REQUEST.reset(token)


def current() -> tuple[str | None, str | None]:
    """The current (request_id, model), or (None, None) outside a request."""
    return _REQUEST.get() or (None, None)


class RequestContext:
    """``with request_context(rid, model):`` the same as bind/unbind, as a context manager."""

    __slots__ = ("_token", "_value")

    def __init__(self, request_id: str | None, model: str | None) -> None:
        self._value = (request_id, model)

    def __enter__(self) -> RequestContext:
        self._token = _REQUEST.set(self._value)
        return self

    def __exit__(self, *exc: object) -> None:
        _REQUEST.reset(self._token)


def request_context(request_id: str | None, model: str | None = None) -> RequestContext:
    return RequestContext(request_id, model)


# ---------------------------------------------------------------------------------------------
# Request ids: a random per-process prefix plus a counter. Unique without a syscall per id
# (uuid4 reads os.urandom each time); the prefix is redrawn in a forked child.

_counter = itertools.count()
_prefix = ""


def _reseed() -> None:
    global _counter, _prefix
    _prefix = os.urandom(8).hex()
    _counter = itertools.count()


_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """32 hex digits: 64 random bits for this process, then a 64-bit counter."""
    return f"{_prefix}{next(_counter):016x}"


MAX_REQUEST_ID = 128
_SANE_ID = re.compile(f"[!-~]{{1,{MAX_REQUEST_ID}}}")  # visible ASCII: no spaces, no control chars
_SANE_ID_BYTES = re.compile(_SANE_ID.pattern.encode())


def request_id_from(header: str | bytes | None) -> str:
    """The client's ``x-request-id`` if it is 1-128 visible ASCII characters, else a new id."""
    if header:
        if isinstance(header, bytes):
            if _SANE_ID_BYTES.fullmatch(header):
                return header.decode("ascii")
        elif _SANE_ID.fullmatch(header):
            return header
    return new_request_id()


# ---------------------------------------------------------------------------------------------
# Formatters.


def _context_of(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """``extra={"request_id": ..., "model": ...}`` wins over the task's context."""
    rid, model = _REQUEST.get() or (None, None)
    d = record.__dict__
    return d.get("request_id") or rid, d.get("model") or model


class TextFormatter(logging.Formatter):
    """Today's format, with ``[request_id=… model=…]`` after the message inside a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        rid, model = _context_of(record)
        if rid is None and model is None:
            return line
        parts = []
        if rid is not None:
            parts.append(f"request_id={rid}")
        if model is not None:
            parts.append(f"model={model}")
        return f"{line} [{' '.join(parts)}]"


_encode = msgspec.json.Encoder(enc_hook=str).encode  # anything odd in "fields" becomes its str()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, model, request_id, exception, fields.

    ``extra={"fields": {...}}`` adds keys (the access log's method, path, status, ...).
    """

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            + f".{int(created * 1000) % 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage().rstrip("\n"),
        }
        rid, model = _context_of(record)
        if model is not None:
            doc["model"] = model
        if rid is not None:
            doc["request_id"] = rid
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        fields = record.__dict__.get("fields")
        if fields:
            for key, value in fields.items():
                doc.setdefault(key, value)
        # msgspec escapes newlines inside strings: a traceback stays on its one line.
        return _encode(doc).decode()


# ---------------------------------------------------------------------------------------------
# Access log.

_access_on = False


def access_enabled() -> bool:
    return _access_on


def _clean(text: str, limit: int) -> str:
    # Paths arrive percent-decoded: a %0A must not start a forged log line in text mode.
    if len(text) > limit:
        text = text[:limit] + "..."
    return text if text.isprintable() else repr(text)[1:-1]


def _client(client: Any) -> str | None:
    if client is None:
        return None
    if isinstance(client, tuple | list) and len(client) == 2:
        return f"{client[0]}:{client[1]}"
    return str(client)


def access(
    method: str, path: str, status: int, seconds: float, request_id: str | None, client: Any = None
) -> None:
    """One INFO line on ``modelport.access`` per request; a no-op unless access logging is on.

    ``path`` loses its query string (presigned tokens, API keys live there); bodies and headers
    are never taken. ``client`` is ASGI's (host, port) tuple, a string, or None.
    """
    if not _access_on or not ACCESS_LOGGER.isEnabledFor(logging.INFO):
        return
    path = _clean(path.partition("?")[0], 2048)
    method = _clean(method, 16)
    peer = _client(client)
    fields = {"method": method, "path": path, "status": status, "seconds": round(seconds, 6), "client": peer}
    # makeRecord + handle, not .info(): skips findCaller's stack walk (~1.3 us of ~9), useless here.
    record = ACCESS_LOGGER.makeRecord(
        ACCESS_LOGGER.name,
        logging.INFO,
        __file__,
        0,
        '%s "%s %s" %d %.2f ms',
        (peer or "-", method, path, status, seconds * 1000.0),
        None,
        extra={"request_id": request_id, "fields": fields},
    )
    ACCESS_LOGGER.handle(record)


# ---------------------------------------------------------------------------------------------
# Configuration.

_handler: logging.Handler | None = None


def configure(
    level: str, fmt: str = "text", *, access_log: bool = False, stream: TextIO | None = None
) -> None:
    """Send every logger (uvicorn's included) to one stderr handler in ``fmt`` ("text" or "json").

    ``access_log`` turns on ``modelport.access`` (INFO, whatever ``level`` is); off, ``access()``
    returns at once. uvicorn's own access logger is muted: it logs query strings and no request id,
    and ``modelport.access`` replaces it. Calling ``configure`` again replaces the handler.
    """
    global _handler, _access_on
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: expected text or json")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    else:
        for old in list(root.handlers):  # basicConfig's, or one left by a library
            if type(old) is logging.StreamHandler:
                root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _handler = handler
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    # No handler and no propagation: uvicorn's hasHandlers() is False and it skips access lines.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers = []
    uvicorn_access.propagate = False
    _access_on = access_log
    ACCESS_LOGGER.setLevel(logging.INFO if access_log else logging.WARNING)
    # JSON mode: a warnings.warn() must be a JSON line too, not the warnings module's two lines.
    logging.captureWarnings(fmt == "json")
