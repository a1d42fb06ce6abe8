"""Download a listing into a folder: files in parallel, large files in parallel ranges, streamed to disk.

Memory stays bounded (a few MiB per worker), every part resumes from its last byte after a transient
failure, and sizes are checked before a file counts as done.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from modelport.errors import StorageError
from modelport.storage.config import StorageSettings
from modelport.storage.progress import Reporter
from modelport.storage.source import RemoteFile, Source, TransientError, redact

_MIB = 1024 * 1024


class _CancelledError(Exception):
    pass


@dataclass
class _FileState:
    file: RemoteFile
    path: Path
    parts: int
    t0: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def part_done(self) -> bool:
        with self.lock:
            self.parts -= 1
            return self.parts == 0


def split(size: int, settings: StorageSettings, ranges: bool) -> list[tuple[int, int | None]]:
    """Byte ranges for one file: one read for small files, up to ``concurrency`` equal parts for large ones."""
    if not ranges or size < 2 * settings.min_part_size:
        return [(0, None)]
    count = min(settings.concurrency, math.ceil(size / settings.min_part_size))
    # Few, large parts: each ranged GET costs a request (and a whole-object read on some servers).
    part = math.ceil(size / count / _MIB) * _MIB
    return [(start, min(start + part, size)) for start in range(0, size, part)]


def _pwrite_all(fd: int, data: bytes, offset: int, path: Path) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _prepare(root: Path, f: RemoteFile) -> Path:
    target = root.joinpath(*f.rel.split("/"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two objects mapping to one name is a listing bug, never a silent overwrite.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise StorageError(f"object {f.rel!r} collides with another object's file or folder") from exc
    return target


class Transfer:
    def __init__(self, source: Source, settings: StorageSettings, reporter: Reporter) -> None:
        self.source = source
        self.settings = settings
        self.reporter = reporter
        self.cancel = threading.Event()
        self.bytes = 0
        self._bytes_lock = threading.Lock()

    def run(self, files: Sequence[RemoteFile], root: Path) -> int:
        """Fetch ``files`` below ``root`` (an existing folder); return the bytes written."""
        jobs: list[tuple[_FileState, int, int | None]] = []
        for f in files:
            target = _prepare(root, f)
            if f.size == 0:
                self.reporter.file_done(f.rel, 0, 0.0)
                continue
            parts = split(f.size or 0, self.settings, self.source.supports_ranges and f.size is not None)
            state = _FileState(file=f, path=target, parts=len(parts))
            jobs.extend((state, start, end) for start, end in parts)
        if not jobs:
            return 0
        # Largest parts first, so the big file's ranges overlap with the many small files.
        jobs.sort(key=lambda j: -((j[2] if j[2] is not None else j[0].file.size or 0) - j[1]))
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.settings.concurrency, len(jobs))))
        futures: list[Future[None]] = []
        try:
            futures = [pool.submit(self._part, state, start, end) for state, start, end in jobs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in done:
                exc = fut.exception()
                if exc is not None:
                    raise exc
        except BaseException:
            self.cancel.set()
            for fut in futures:
                fut.cancel()
            raise
        finally:
            # Running parts see the cancel flag between chunks; wait so nothing writes after we return.
            pool.shutdown(wait=True, cancel_futures=True)
        return self.bytes

    def _part(self, state: _FileState, start: int, end: int | None) -> None:
        f = state.file
        expected_end = end if end is not None else f.size
        pos, attempt, delay = start, 0, 0.2
        fd = os.open(state.path, os.O_WRONLY)
        try:
            while True:
                if self.cancel.is_set():
                    raise _CancelledError()
                try:
                    for chunk in self.source.read(f, pos, end if pos == start else expected_end):
                        if self.cancel.is_set():
                            raise _CancelledError()
                        _pwrite_all(fd, chunk, pos, state.path)
                        pos += len(chunk)
                        self._count(len(chunk))
                    if expected_end is not None and pos < expected_end:
                        raise TransientError(f"stream ended at byte {pos} of {expected_end}")
                    break
                except TransientError as exc:
                    attempt += 1
                    if attempt > self.settings.retries:
                        raise StorageError(
                            f"cannot fetch {redact(self.source.uri)} (object {f.rel!r}) after {attempt} attempts: {exc}"
                        ) from exc
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            os.close(fd)
        if state.part_done():
            self._finish_file(state)

    def _count(self, n: int) -> None:
        with self._bytes_lock:
            self.bytes += n
        self.reporter.advance(n)

    def _finish_file(self, state: _FileState) -> None:
        size = state.path.stat().st_size
        if state.file.size is not None and size != state.file.size:
            raise StorageError(
                f"size mismatch for {redact(self.source.uri)} (object {state.file.rel!r}): "
                f"store reported {state.file.size} bytes, received {size}"
            )
        self.reporter.file_done(state.file.rel, size, time.monotonic() - state.t0)
