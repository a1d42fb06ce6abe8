"""A Source over an obstore store (S3, GCS, Azure): listing with a "/" boundary, ranged streaming reads.

obstore errors are translated here, once, into StorageError, UnsafePath or TransientError.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, List  # noqa: UP035 - see _list_tree

import obstore
from obstore import exceptions as obx

from modelport.errors import StorageError, UnsafePath
from modelport.storage.config import StorageSettings
from modelport.storage.source import Listing, RemoteFile, TransientError, redact, safe_relpath

# Bytes handed from Rust to Python at a time: bounds memory per stream, big enough to keep overhead low.
CHUNK = 1024 * 1024


def client_options(
    settings: StorageSettings, *, allow_http: bool, verify: bool = True
) -> Any:  # obstore takes TypedDicts; built from settings here
    opts: dict[str, Any] = {
        "allow_http": allow_http,
        "connect_timeout": timedelta(seconds=settings.connect_timeout_s),
        # A per-read timeout catches stalls; the overall timeout must not cut a long healthy download.
        "read_timeout": timedelta(seconds=settings.read_timeout_s),
        "timeout": timedelta(days=1),
    }
    if not verify:
        opts["allow_invalid_certificates"] = True
    return opts


def retry_config(settings: StorageSettings) -> Any:  # obstore takes TypedDicts; built from settings here
    return {
        "max_retries": settings.retries,
        "retry_timeout": timedelta(seconds=max(30.0, settings.read_timeout_s * (settings.retries + 1))),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=5),
            "base": 2,
        },
    }


def first_line(exc: BaseException) -> str:
    # obstore appends a multi-line "Debug source" dump; the first line says what happened.
    text = str(exc).strip().split("\n\nDebug source", 1)[0]
    return " ".join(text.split())


def certificate_problem(exc: BaseException) -> str | None:
    """rustls's reason when the server's TLS certificate was refused (only in the debug dump)."""
    m = re.search(r"InvalidCertificate\(\s*(\w+)", str(exc))
    return m.group(1) if m else None


def translate(exc: Exception, uri: str, key: str | None, settings: StorageSettings) -> Exception:
    """Map an obstore error to ours; the message names the URI, the object and the cause."""
    what = f"{redact(uri)}" + (f" (object {key!r})" if key else "")
    cause = redact(first_line(exc), settings.secrets())
    refused = certificate_problem(exc)
    if refused:
        # Not transient: retrying cannot make an untrusted certificate trusted.
        return StorageError(
            f"TLS certificate of the server refused ({refused}) for {what}; if a private CA signed it, "
            "point AWS_CA_BUNDLE (S3) at that CA's PEM file"
        )
    if isinstance(exc, obx.InvalidPathError):
        m = re.search(r'[Pp]ath "(.*?)"', str(exc))
        name = m.group(1) if m else cause
        return UnsafePath(f"refusing object that would land outside the destination: {name!r} in {what}")
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"not found: {what}")
    if isinstance(exc, (obx.PermissionDeniedError, obx.UnauthenticatedError)):
        return StorageError(f"access denied to {what}: {cause}")
    if isinstance(exc, obx.PreconditionError):
        return StorageError(f"{what} changed while it was being fetched; retry the fetch")
    if isinstance(exc, obx.GenericError | TimeoutError | ConnectionError):
        return TransientError(f"{what}: {cause}")
    return StorageError(f"cannot fetch {what}: {cause}")


class ObjectStoreSource:
    """Files under ``prefix`` in ``store``; ``prefix`` naming one object fetches just that file."""

    supports_ranges = True

    def __init__(self, uri: str, store: Any, prefix: str, settings: StorageSettings) -> None:
        self.uri = uri
        self.store = store
        self.prefix = prefix
        self.settings = settings

    def list(self) -> Listing:
        files = self._list_tree()
        if not files and self.prefix and not self.prefix.endswith("/"):
            single = self._head(self.prefix)
            if single is not None:
                files = [single]
        if not files:
            raise StorageError(f"nothing found at {redact(self.uri)}")
        return Listing(uri=self.uri, files=tuple(files))

    def _list_tree(self) -> List[RemoteFile]:  # noqa: UP006 - `list` is a method of this class
        prefix = self.prefix.strip("/")
        out: dict[str, RemoteFile] = {}
        try:
            # obstore lists whole path segments, so prefix "models/iris" never matches "models/iris-v2/".
            for batch in obstore.list(self.store, prefix=prefix or None, chunk_size=1000):
                for meta in batch:
                    path = meta["path"]
                    rel = path[len(prefix) :].lstrip("/") if prefix else path
                    if not rel:
                        continue
                    rel = safe_relpath(rel)
                    out[rel] = RemoteFile(
                        rel=rel,
                        key=path,
                        size=int(meta["size"]),
                        etag=meta.get("e_tag"),
                        version=meta.get("version"),
                    )
        except (UnsafePath, StorageError):
            raise
        except Exception as exc:
            err = translate(exc, self.uri, None, self.settings)
            if isinstance(err, TransientError):
                raise StorageError(f"cannot list {err}") from exc
            raise err from exc
        return _drop_folder_markers(out)

    def _head(self, key: str) -> RemoteFile | None:
        try:
            meta = obstore.head(self.store, key)
        except FileNotFoundError:
            return None
        except Exception as exc:
            err = translate(exc, self.uri, key, self.settings)
            raise (StorageError(str(err)) if isinstance(err, TransientError) else err) from exc
        name = safe_relpath(key.rsplit("/", 1)[-1])
        return RemoteFile(
            rel=name, key=key, size=int(meta["size"]), etag=meta.get("e_tag"), version=meta.get("version")
        )

    def read(self, file: RemoteFile, start: int, end: int | None) -> Iterator[bytes]:
        options: Any = {}  # obstore takes a TypedDict
        if end is not None:
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}
        # Pin the version we listed, so a concurrent overwrite fails loudly instead of mixing bytes.
        if file.version:
            options["version"] = file.version
        elif file.etag:
            options["if_match"] = file.etag
        try:
            result = obstore.get(self.store, file.key, options=options or None)
            yield from result.stream(min_chunk_size=CHUNK)
        except Exception as exc:
            raise translate(exc, self.uri, file.key, self.settings) from exc


def _drop_folder_markers(files: dict[str, RemoteFile]) -> list[RemoteFile]:
    # Consoles create zero-byte "dir/" markers; obstore reports them as "dir". A marker that is also
    # the parent of other files is a folder, not a file: keeping it would collide with the folder.
    parents = set()
    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parents.add("/".join(parts[:i]))
    return [f for rel, f in sorted(files.items()) if not (f.size == 0 and rel in parents)]
