"""The one interface every back-end implements, and the checks all of them share.

A back-end turns a URI into a ``Source``: a listing of files below a root plus a way to read byte ranges.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from modelport.errors import UnsafePath


class TransientError(Exception):
    """A read failed in a way worth retrying (dropped connection, stall, 5xx); internal to storage."""


@dataclass(frozen=True)
class RemoteFile:
    rel: str  # path below the fetched root, "/"-separated, already checked by safe_relpath
    key: str  # the back-end's own name for the object
    size: int | None  # None when the store does not say (some HTTP servers)
    etag: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class Listing:
    uri: str  # the URI actually fetched (after registry resolution)
    files: tuple[RemoteFile, ...]
    # "tar" or "zip": the single file is an archive to unpack into the destination.
    archive: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


class Source(Protocol):
    uri: str
    # Whether read() honours start > 0; if not, a retry restarts the file from byte 0.
    supports_ranges: bool

    def list(self) -> Listing: ...

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        """Yield the bytes [start, end) of ``file`` (end None = to the end); raise TransientError to retry."""
        ...


def safe_relpath(name: str, *, what: str = "object") -> str:
    """Return ``name`` as a relative POSIX path that cannot leave its root, or raise UnsafePath."""
    if not name or "\x00" in name:
        raise UnsafePath(f"refusing {what} with an empty or NUL-containing name: {name!r}")
    if name.startswith("/") or name.startswith("\\") or re.match(r"^[A-Za-z]:[\\/]", name):
        raise UnsafePath(f"refusing {what} with an absolute path: {name!r}")
    parts = name.replace("\\", "/").split("/")
    if any(p == ".." for p in parts):
        raise UnsafePath(f"refusing {what} that would land outside the destination: {name!r}")
    clean = [p for p in parts if p not in ("", ".")]
    if not clean:
        raise UnsafePath(f"refusing {what} with no file name: {name!r}")
    return str(PurePosixPath(*clean))


_QUERY = re.compile(r"\?[^\s\"'<>]*")
_USERINFO = re.compile(r"(://)[^/@\s]+@")


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Drop query strings (presigned signatures, SAS tokens), URL user-info and known secret values."""
    text = _USERINFO.sub(r"\1***@", _QUERY.sub("?***", text))
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
