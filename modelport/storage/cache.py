"""The model area of the shared content-addressed cache: one entry per (URI, what the store reports
about each object).

A second fetch of an unchanged model downloads nothing; the shared cache (modelport.cache) makes
several processes fetching the same model at once wait for one download, and keeps entries in use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from modelport.cache import get_or_build
from modelport.storage.source import Listing


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


def cached_tree(
    listing: Listing, cache_dir: Path, fill: Callable[[Path], None], max_bytes: int | None = None
) -> tuple[Path, bool]:
    """Return (folder, hit): the cached tree for ``listing``, calling ``fill(staging)`` on a miss."""
    parts = urlsplit(listing.uri)
    uri = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) if parts.scheme else listing.uri

    def build(tmp: Path) -> None:
        tmp.mkdir()
        fill(tmp)

    hit = get_or_build(
        cache_dir / "models",
        fingerprint(listing),
        build,
        lambda _entry: {"kind": "model", "uri": uri, "files": len(listing.files)},
        max_bytes=max_bytes,
    )
    return hit.path, not hit.built
