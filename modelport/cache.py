"""The content-addressed cache shared by models (``<cache>/models``) and environments (``<cache>/envs``).

Layout of one area: ``<key>/`` the content, ``<key>.ready.json`` written last (an entry without it is
unfinished and is never used), ``<key>.lock`` taken exclusively while the entry is built, and
``<key>.use.lock`` held shared by every process using the entry. Eviction (least recently used first,
down to a byte budget) takes the use lock exclusively without waiting and skips the entries it cannot
get, so an entry a running server holds is never removed; lock files are never deleted (deleting a
file others may be about to lock is what breaks flock-based schemes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AREAS = ("models", "envs")
READY = ".ready.json"
_TMP = ".tmp-"
_TRASH = ".trash-"

# Use locks this process holds, by path: kept until the process exits (a server uses its model and
# environment for its whole life) or release_all() is called (tests, one-shot commands).
_HELD: dict[str, int] = {}


@dataclass(frozen=True)
class CacheHit:
    path: Path
    meta: dict[str, Any]
    built: bool
    seconds: float


@dataclass(frozen=True)
class CacheEntry:
    area: str
    key: str
    path: Path
    bytes: int
    last_used: float
    meta: dict[str, Any] = field(default_factory=dict)
    in_use: bool = False


@dataclass(frozen=True)
class PruneResult:
    removed: tuple[CacheEntry, ...]
    busy: tuple[CacheEntry, ...]
    leftovers: tuple[str, ...]
    total_before: int
    total_after: int


def read_ready(root: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads((root / f"{key}{READY}").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and (root / key).is_dir() else None


def get_or_build(
    root: Path,
    key: str,
    build: Callable[[Path], None],
    finish: Callable[[Path], dict[str, Any]] | None = None,
    on_wait: Callable[[str], None] = lambda _m: None,
    max_bytes: int | None = None,
) -> CacheHit:
    """Return the ready entry for `key`, building it once across processes if it is missing.

    `build(tmp)` fills a new folder (it does not exist yet); it is renamed into place and
    `finish(final)` (relocation, verification) returns the metadata kept in the ready marker.
    The entry stays marked in use by this process. With `max_bytes`, a build is followed by
    evicting the least recently used entries of the whole cache down to that budget.
    """
    root.mkdir(parents=True, exist_ok=True)
    # In use before looking, so that an eviction cannot remove what we are about to return.
    hold(root, key, on_wait)
    entry = root / key
    data = read_ready(root, key)
    if data is not None:
        _touch(root, key)
        return CacheHit(entry, data.get("meta", {}), False, 0.0)
    with _build_lock(root / f"{key}.lock", on_wait, entry):
        data = read_ready(root, key)
        if data is not None:
            _touch(root, key)
            return CacheHit(entry, data.get("meta", {}), False, 0.0)
        _clean(root, key)
        start = time.monotonic()
        tmp = root / f"{_TMP}{key}-{os.getpid()}"
        try:
            build(tmp)
            os.rename(tmp, entry)
            meta = finish(entry) if finish else {}
            meta["built_s"] = round(time.monotonic() - start, 2)
            _write_ready(root, key, {"meta": meta, "bytes": disk_usage(entry), "created": time.time()})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(entry, ignore_errors=True)
            raise
        hit = CacheHit(entry, meta, True, time.monotonic() - start)
    if max_bytes is not None:
        prune(root.parent, max_bytes)
    return hit


def hold(root: Path, key: str, on_wait: Callable[[str], None] = lambda _m: None) -> None:
    """Mark `key` in use by this process (a shared lock, kept until exit or release_all())."""
    path = str(root / f"{key}.use.lock")
    if path in _HELD:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(f"{root / key} is being evicted; waiting")
            fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    _HELD[path] = fd


def release_all() -> None:
    """Drop every use lock this process holds (tests; a server keeps them until it exits)."""
    for fd in _HELD.values():
        os.close(fd)
    _HELD.clear()


def list_entries(cache_dir: Path) -> list[CacheEntry]:
    """Every ready entry of the cache, least recently used first."""
    out: list[CacheEntry] = []
    for area in AREAS:
        root = cache_dir / area
        if not root.is_dir():
            continue
        for marker in root.glob(f"*{READY}"):
            key = marker.name[: -len(READY)]
            data = read_ready(root, key)
            if data is None:
                continue
            try:
                used = marker.stat().st_mtime
            except OSError:
                continue
            busy = _busy(root / f"{key}.use.lock")
            out.append(
                CacheEntry(area, key, root / key, int(data.get("bytes", 0)), used, data.get("meta", {}), busy)
            )
    out.sort(key=lambda e: e.last_used)
    return out


def prune(cache_dir: Path, max_bytes: int) -> PruneResult:
    """Evict least recently used entries not in use until the ready entries fit in `max_bytes`;
    remove what unfinished builds and earlier evictions left behind."""
    leftovers = _remove_leftovers(cache_dir)
    entries = list_entries(cache_dir)
    total = before = sum(e.bytes for e in entries)
    removed: list[CacheEntry] = []
    busy: list[CacheEntry] = []
    for e in entries:
        if total <= max_bytes:
            break
        if _evict(cache_dir / e.area, e.key):
            removed.append(e)
            total -= e.bytes
        else:
            busy.append(e)
    return PruneResult(tuple(removed), tuple(busy), tuple(leftovers), before, total)


def disk_usage(path: Path) -> int:
    """Bytes on disk under `path`, each inode once (hard links inside the tree are not double counted)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for item in it:
                    try:
                        st = item.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if item.is_dir(follow_symlinks=False):
                        stack.append(item.path)
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_blocks * 512
        except OSError:
            continue
    return total


def _touch(root: Path, key: str) -> None:
    # The marker's mtime is the entry's last use: what least-recently-used eviction orders by.
    with contextlib.suppress(OSError):
        os.utime(root / f"{key}{READY}")


def _busy(lock_path: Path) -> bool:
    if str(lock_path) in _HELD:
        return True
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def _evict(root: Path, key: str) -> bool:
    if str(root / f"{key}.use.lock") in _HELD:
        return False
    use = _try_lock(root / f"{key}.use.lock")
    if use is None:
        return False
    try:
        build = _try_lock(root / f"{key}.lock")
        if build is None:
            return False
        try:
            # Marker first: from here on nobody treats the folder as an entry.
            (root / f"{key}{READY}").unlink(missing_ok=True)
            trash = root / f"{_TRASH}{key}-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(root / key, trash)
        finally:
            os.close(build)
    finally:
        os.close(use)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def _remove_leftovers(cache_dir: Path) -> list[str]:
    removed: list[str] = []
    for area in AREAS:
        root = cache_dir / area
        if not root.is_dir():
            continue
        for path in root.iterdir():
            name = path.name
            if name.endswith((".lock", READY)) or not path.is_dir():
                continue
            if name.startswith(_TRASH):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"{area}/{name}")
                continue
            key = name[len(_TMP) :].rsplit("-", 1)[0] if name.startswith(_TMP) else name
            if not name.startswith(_TMP) and read_ready(root, key) is not None:
                continue
            fd = _try_lock(root / f"{key}.lock")
            if fd is None:
                continue  # being built right now
            try:
                if name.startswith(_TMP) or read_ready(root, key) is None:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(f"{area}/{name}")
            finally:
                os.close(fd)
    return removed


@contextlib.contextmanager
def _build_lock(path: Path, on_wait: Callable[[str], None], entry: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
    # Only the build-lock holder gets here, so leftovers are from a build that died.
    (root / f"{key}{READY}").unlink(missing_ok=True)
    for stale in [root / key, *root.glob(f"{_TMP}{key}-*")]:
        if stale.exists() or stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
            if stale.exists():
                raise OSError(f"cannot remove the unfinished cache entry {stale}")


def _write_ready(root: Path, key: str, data: dict[str, Any]) -> None:
    tmp = root / f".{key}{READY}.{os.getpid()}"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, root / f"{key}{READY}")


def parse_bytes(text: str) -> int:
    """'500000000', '500M', '20G', '1.5GiB' -> bytes (k/M/G/T decimal, Ki/Mi/Gi/Ti binary)."""
    value = str(text).strip()
    units = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
    low = value.lower().removesuffix("b")
    binary = low.endswith("i")
    low = low.removesuffix("i")
    unit = low[-1:] if low[-1:].isalpha() else ""
    if unit not in units:
        raise ValueError(f"{text!r} is not a size (use bytes, or k/M/G/T, Ki/Mi/Gi/Ti)")
    number = low[: len(low) - len(unit)].strip()
    factor = (1024 ** " kmgt".index(unit)) if binary and unit else units[unit]
    try:
        n = float(number)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a size (use bytes, or k/M/G/T, Ki/Mi/Gi/Ti)") from exc
    if n < 0:
        raise ValueError(f"{text!r}: a size cannot be negative")
    return int(n * factor)
