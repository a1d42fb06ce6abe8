"""Fetch model URIs to local folders; one module per back-end, chosen by scheme in ``registry``.

``fetch`` copies a URI to DEST atomically; ``resolve_model`` serves local paths in place and remote
URIs from the content-addressed cache.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.progress import Clock, MeteredReporter, NullReporter, Reporter, Summary
from modelport.storage.registry import LOCAL_SCHEMES, open_source, scheme_of
from modelport.storage.source import Listing, Source, redact

__all__ = ["StorageSettings", "Summary", "fetch", "resolve_model"]

log = logging.getLogger("modelport.storage")


def _fill(source: Source, listing: Listing, root: Path, settings: StorageSettings, reporter: Reporter) -> int:
    """Download ``listing`` into the empty folder ``root`` (unpacking an archive); return bytes fetched."""
    from modelport.storage.transfer import Transfer

    transfer = Transfer(source, settings, reporter)
    if listing.archive is None:
        return transfer.run(listing.files, root)
    from modelport.storage.archives import unpack

    scratch = root.parent / f"{root.name}.archive"
    scratch.mkdir()
    try:
        fetched = transfer.run(listing.files, scratch)
        unpack(scratch / listing.files[0].rel, listing.archive, root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return fetched


Placer = Callable[[Source, Listing], tuple[Path, int, bool]]


def metric_scheme(uri: str) -> str:
    """The ``scheme`` label of the fetch metrics: the registry's key, "file" for a plain path."""
    return scheme_of(uri) or "file"


def _run(uri: str, settings: StorageSettings, reporter: Reporter, place: Placer) -> tuple[Path, Summary]:
    clock = Clock()
    source = open_source(uri, settings)
    listing = source.list()
    reporter.start(redact(listing.uri), len(listing.files), listing.total_bytes)
    try:
        path, fetched, cached = place(source, listing)
    except BaseException:
        reporter.abort()
        raise
    summary = Summary(redact(uri), len(listing.files), fetched, clock.elapsed(), cached=cached)
    reporter.finish(summary)
    return path, summary


def fetch(uri: str, dest: Path | str, settings: StorageSettings, reporter: Reporter | None = None) -> Summary:
    """Copy the model at ``uri`` to the folder ``dest``; on failure ``dest`` is left as it was."""
    from modelport.storage.staging import commit, discard, new_staging

    dest = Path(dest).absolute()
    reporter = MeteredReporter(reporter or NullReporter(), metric_scheme(uri))

    def place(source: Source, listing: Listing) -> tuple[Path, int, bool]:
        stage = new_staging(dest)
        try:
            fetched = _fill(source, listing, stage, settings, reporter)
            commit(stage, dest)
        except BaseException:
            discard(stage)
            raise
        return dest, fetched, False

    _, summary = _run(uri, settings, reporter, place)
    return summary


def resolve_model(
    uri: str, settings: StorageSettings, cache_dir: Path, reporter: Reporter | None = None
) -> Path:
    """Return a local folder holding the model at ``uri`` (fetching it into the cache if needed)."""
    if scheme_of(uri) in LOCAL_SCHEMES:
        from modelport.storage.local import local_path

        clock = Clock()
        path = local_path(uri, settings)
        if not path.exists():
            raise StorageError(f"model path does not exist: {path}")
        # absolute(), not resolve(): a modelcar's /mnt/models links to /proc/<pid>/root/models,
        # whose realpath is /models of this container's own root.
        path = path.absolute()
        # Served in place: nothing downloaded, but the series shows how the model was resolved.
        from modelport.metrics import FETCH_BYTES, FETCH_SECONDS

        scheme = metric_scheme(uri)
        FETCH_BYTES.labels(scheme).inc(0)
        FETCH_SECONDS.labels(scheme).observe(clock.elapsed())
        return path
    from modelport.storage.cache import cached_tree

    reporter = MeteredReporter(reporter or NullReporter(), metric_scheme(uri))

    def place(source: Source, listing: Listing) -> tuple[Path, int, bool]:
        counted = [0]

        def fill(stage: Path) -> None:
            counted[0] = _fill(source, listing, stage, settings, reporter)

        path, hit = cached_tree(listing, Path(cache_dir), fill)
        log.info("model %s %s cache at %s", redact(uri), "found in" if hit else "fetched into", path)
        return path, counted[0], hit

    path, _ = _run(uri, settings, reporter, place)
    return path
