"""The content-addressed model cache: one folder per (URI, what the store reports about each object).

A second fetch of an unchanged model downloads nothing; a file lock plus an atomic rename let
several processes fetch the same model at once without corrupting each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from modelport.storage.source import Listing
from modelport.storage.staging import commit, discard, new_staging


def fingerprint(listing: Listing) -> str:
    """Hash of the URI (query dropped: presigned signatures change per request) and each object's
    name, size, ETag and version: any change in the store gives a new cache entry."""
    parts = urlsplit(listing.uri)
    uri = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) if parts.scheme else listing.uri
    doc = {
        "uri": uri,
        "archive": listing.archive,
        "files": [[f.rel, f.size, f.etag, f.version] for f in listing.files],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def cached_tree(listing: Listing, cache_dir: Path, fill: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return (folder, hit): the cached tree for ``listing``, calling ``fill(staging)`` on a miss."""
    models = cache_dir / "models"
    models.mkdir(parents=True, exist_ok=True)
    key = fingerprint(listing)
    final = models / key
    if final.is_dir():
        return final, True
    with open(models / f"{key}.lock", "a") as lock:
        # Blocks while another process fills the same entry; then it is simply there.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():
            return final, True
        stage = new_staging(final)
        try:
            fill(stage)
            commit(stage, final)
        except BaseException:
            discard(stage)
            raise
    return final, False
