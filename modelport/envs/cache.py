"""Content-addressed store of built environments: one folder per key, a lock, a ready marker.

An entry counts only once its marker exists; the marker is written (atomically) last, after the
environment was built and verified, so an interrupted build is never reused, only cleaned up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import EnvironmentError_

READY = ".modelport-ready.json"
# Bump when the way environments are built changes, so old entries are not reused.
RECIPE = "1"


@dataclass(frozen=True)
class CacheHit:
    path: Path
    meta: dict[str, Any]
    built: bool
    seconds: float


def cache_key(kind: str, *parts: str) -> str:
    """Hash of what decides an environment's contents, plus the platform it runs on."""
    platform = f"{sysconfig.get_platform()}-{sys.implementation.name}"
    blob = json.dumps([RECIPE, kind, platform, *parts])
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


def read_ready(entry: Path) -> dict[str, Any] | None:
    try:
        return json.loads((entry / READY).read_text())
    except (OSError, ValueError):
        return None


def get_or_build(
    root: Path,
    key: str,
    build: Callable[[Path], None],
    finish: Callable[[Path], dict[str, Any]],
    on_wait: Callable[[str], None] = lambda _m: None,
) -> CacheHit:
    """Return the ready entry for `key`, building it once across processes if it is missing.

    `build(tmp)` fills a fresh folder; it is then renamed into place and `finish(final)`
    relocates and verifies it there, returning the metadata stored in the marker.
    """
    entry = root / key
    meta = read_ready(entry)
    if meta is not None:
        return CacheHit(entry, meta, False, 0.0)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{key}.lock", on_wait, entry):
        meta = read_ready(entry)
        if meta is not None:
            return CacheHit(entry, meta, False, 0.0)
        _clean(root, key)
        start = time.monotonic()
        tmp = root / f".tmp-{key}-{os.getpid()}"
        try:
            build(tmp)
            os.rename(tmp, entry)
            meta = finish(entry)
            meta["built_s"] = round(time.monotonic() - start, 2)
            _write_ready(entry, meta)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(entry, ignore_errors=True)
            raise
        return CacheHit(entry, meta, True, time.monotonic() - start)


@contextlib.contextmanager
def _locked(path: Path, on_wait: Callable[[str], None], entry: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(f"another process is building {entry}; waiting for it")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _clean(root: Path, key: str) -> None:
    # Only the lock holder gets here, so leftovers are from a build that died.
    for stale in [root / key, *root.glob(f".tmp-{key}-*")]:
        if stale.exists() or stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
            if stale.exists():
                raise EnvironmentError_(f"cannot remove the unfinished environment {stale}")


def _write_ready(entry: Path, meta: dict[str, Any]) -> None:
    tmp = entry / f"{READY}.tmp"
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(tmp, entry / READY)
