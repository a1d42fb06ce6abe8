"""Local folders and files: plain paths, ``file://`` and ``pvc://NAME/path`` (KServe mounts PVCs under /mnt/pvc).

Served in place by resolve_model; copied through the shared transfer code by ``fetch``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.source import Listing, RemoteFile, redact, safe_relpath

CHUNK = 1024 * 1024


def local_path(uri: str, settings: StorageSettings) -> Path:
    """The filesystem path a local, file:// or pvc:// URI names."""
    if uri.startswith("file://"):
        return Path(unquote(urlsplit(uri).path))
    if uri.startswith("pvc://"):
        rest = uri[len("pvc://") :].strip("/")
        name, _, sub = rest.partition("/")
        if not name:
            raise StorageError(f"PVC URI names no claim: {redact(uri)}")
        # KServe mounts the claim itself at the root; NAME only picks the volume.
        return Path(settings.pvc_root) / sub if sub else Path(settings.pvc_root)
    return Path(uri)


class LocalSource:
    supports_ranges = True

    def __init__(self, uri: str, settings: StorageSettings) -> None:
        self.uri = uri
        self.path = local_path(uri, settings)

    def list(self) -> Listing:
        root = self.path
        if root.is_file():
            f = RemoteFile(rel=safe_relpath(root.name), key=str(root), size=root.stat().st_size)
            return Listing(uri=self.uri, files=(f,))
        if not root.is_dir():
            raise StorageError(f"model path does not exist: {root}")
        files = []
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                full = Path(dirpath) / name
                if not full.is_file():
                    continue  # sockets, fifos, dangling links
                rel = safe_relpath(full.relative_to(root).as_posix())
                files.append(RemoteFile(rel=rel, key=str(full), size=full.stat().st_size))
        return Listing(uri=self.uri, files=tuple(sorted(files, key=lambda f: f.rel)))

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        try:
            with open(file.key, "rb") as fh:
                fh.seek(start)
                remaining = None if end is None else end - start
                while remaining is None or remaining > 0:
                    chunk = fh.read(CHUNK if remaining is None else min(CHUNK, remaining))
                    if not chunk:
                        break
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
        except OSError as exc:
            raise StorageError(f"cannot read {file.key}: {exc.strerror or exc}") from exc


def open_source(uri: str, settings: StorageSettings) -> LocalSource:
    return LocalSource(uri, settings)
