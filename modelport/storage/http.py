"""HTTP(S) single files, with ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` unpacked; also the MLflow proxy's reader.

Plain urllib: presigned URLs keep their query string, and a socket timeout bounds every read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.source import Listing, RemoteFile, TransientError, redact, safe_relpath

CHUNK = 1024 * 1024
T = TypeVar("T")

ARCHIVE_SUFFIXES = ((".tar.gz", "tar"), (".tgz", "tar"), (".tar", "tar"), (".zip", "zip"))


def archive_kind(name: str) -> str | None:
    lower = name.lower()
    for suffix, kind in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return kind
    return None


def _ssl_context(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HeadUnsupported(StorageError):
    """The server does not answer HEAD (405/501): nothing is wrong with the file."""


def open_url(
    url: str,
    settings: StorageSettings,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    verify: bool = True,
) -> http.client.HTTPResponse:
    """Open ``url``; raise TransientError for failures worth retrying, StorageError for the rest."""
    req = urllib.request.Request(url, method=method, headers=dict(headers or {}), data=data)
    shown = redact(url, settings.secrets())
    try:
        # The timeout applies to connect and to every socket read: a stalled body raises, never hangs.
        return urllib.request.urlopen(req, timeout=settings.read_timeout_s, context=_ssl_context(verify))
    except urllib.error.HTTPError as exc:
        exc.close()
        if method == "HEAD" and exc.code in (405, 501):
            raise HeadUnsupported(f"{shown}: HTTP {exc.code} for HEAD") from exc
        if exc.code >= 500 or exc.code in (408, 429):
            raise TransientError(f"{shown}: HTTP {exc.code}") from exc
        if exc.code == 404:
            raise StorageError(f"not found: {shown}") from exc
        if exc.code in (401, 403):
            raise StorageError(f"access denied to {shown}: HTTP {exc.code}") from exc
        raise StorageError(f"cannot fetch {shown}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransientError(f"{shown}: {redact(str(reason), settings.secrets())}") from exc


def stream_url(
    url: str,
    settings: StorageSettings,
    start: int,
    end: int | None,
    *,
    headers: Mapping[str, str] | None = None,
    verify: bool = True,
) -> Iterator[bytes]:
    """Yield bytes [start, end) of ``url``; servers that ignore Range get their leading bytes skipped."""
    hdrs = dict(headers or {})
    if start or end is not None:
        hdrs["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
    resp = open_url(url, settings, headers=hdrs, verify=verify)
    with resp:
        skip = start if resp.status == 200 else 0
        remaining = None if end is None else end - start
        try:
            while remaining is None or remaining > 0:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            what = "stalled" if isinstance(exc, socket.timeout | TimeoutError) else "dropped"
            raise TransientError(f"{redact(url, settings.secrets())}: read {what}: {exc!r}") from exc


def with_retries(fn: Callable[[], T], settings: StorageSettings) -> T:
    """Call ``fn``, retrying TransientError with exponential backoff; the last failure becomes StorageError."""
    delay = 0.2
    for attempt in range(settings.retries + 1):
        try:
            return fn()
        except TransientError as exc:
            if attempt == settings.retries:
                raise StorageError(f"giving up after {attempt + 1} attempts: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


class HttpSource:
    """One file at an http(s) URL; archives are flagged for unpacking."""

    def __init__(self, uri: str, settings: StorageSettings) -> None:
        self.uri = uri
        self.settings = settings
        self.supports_ranges = False

    def list(self) -> Listing:
        name = unquote(urlsplit(self.uri).path.rstrip("/").rsplit("/", 1)[-1])
        if not name:
            raise StorageError(f"HTTP URI names no file: {redact(self.uri)}")
        rel = safe_relpath(name)
        size, etag = with_retries(self._head, self.settings)
        return Listing(
            uri=self.uri,
            files=(RemoteFile(rel=rel, key=self.uri, size=size, etag=etag),),
            archive=archive_kind(name),
        )

    def _head(self) -> tuple[int | None, str | None]:
        try:
            resp = open_url(self.uri, self.settings, method="HEAD")
        except HeadUnsupported:
            return None, None  # servers without HEAD: learn nothing, fetch anyway
        with resp:
            length = resp.headers.get("Content-Length")
            self.supports_ranges = resp.headers.get("Accept-Ranges", "").lower() == "bytes"
            etag = resp.headers.get("ETag")
            if etag is None and resp.headers.get("Last-Modified"):
                # No ETag: the modification time still tells a changed file from the cached one.
                try:
                    etag = "lm:" + parsedate_to_datetime(resp.headers["Last-Modified"]).isoformat()
                except (TypeError, ValueError):
                    etag = "lm:" + resp.headers["Last-Modified"]
        return (int(length) if length and length.isdigit() else None), etag

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        return stream_url(self.uri, self.settings, start, end)


def open_source(uri: str, settings: StorageSettings) -> HttpSource:
    return HttpSource(uri, settings)
