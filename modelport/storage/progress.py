"""Progress of a fetch: a rich bar on a terminal, one JSON line per file otherwise, a summary at the end.

Everything goes to stderr so that stdout of ``modelport fetch`` is only the destination path.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol, TextIO


@dataclass(frozen=True)
class Summary:
    uri: str
    files: int
    bytes: int
    seconds: float
    cached: bool = False

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "uri": self.uri,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 1),
            "cached": self.cached,
        }


class Reporter(Protocol):
    def start(self, uri: str, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, rel: str, size: int, seconds: float) -> None: ...
    def finish(self, summary: Summary) -> None: ...
    def abort(self) -> None: ...


class NullReporter:
    def start(self, uri: str, files: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self, rel: str, size: int, seconds: float) -> None:
        pass

    def finish(self, summary: Summary) -> None:
        pass

    def abort(self) -> None:
        pass


class JsonLinesReporter:
    """One JSON object per line: machine-readable logs for pods and CI."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def _emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()

    def start(self, uri: str, files: int, total_bytes: int) -> None:
        self._emit({"event": "start", "uri": uri, "files": files, "bytes": total_bytes})

    def advance(self, nbytes: int) -> None:
        pass

    def file_done(self, rel: str, size: int, seconds: float) -> None:
        self._emit({"event": "file", "path": rel, "bytes": size, "seconds": round(seconds, 3)})

    def finish(self, summary: Summary) -> None:
        self._emit(summary.as_dict())

    def abort(self) -> None:
        pass


class RichReporter:
    """A transfer bar for people at a terminal."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[files]}"),
            console=self.console,
            transient=True,
        )
        self._task: Any = None
        self._files = 0
        self._total_files = 0
        self._lock = threading.Lock()

    def start(self, uri: str, files: int, total_bytes: int) -> None:
        self._total_files = files
        self.progress.start()
        self._task = self.progress.add_task("fetching", total=total_bytes or None, files=f"0/{files} files")

    def advance(self, nbytes: int) -> None:
        self.progress.advance(self._task, nbytes)

    def file_done(self, rel: str, size: int, seconds: float) -> None:
        with self._lock:
            self._files += 1
            self.progress.update(self._task, files=f"{self._files}/{self._total_files} files")

    def abort(self) -> None:
        self.progress.stop()

    def finish(self, summary: Summary) -> None:
        self.progress.stop()
        how = "from cache" if summary.cached else f"{summary.mb_per_s:.1f} MB/s"
        self.console.print(
            f"fetched {summary.files} files, {summary.bytes / 1e6:.1f} MB in {summary.seconds:.2f} s ({how})"
        )


class MeteredReporter:
    """Wraps a reporter to feed the fetch metrics: bytes as they arrive (a failed fetch's too),
    seconds once a fetch finishes (a cache hit: its seconds and 0 bytes)."""

    def __init__(self, inner: Reporter, scheme: str) -> None:
        # Imported here: prometheus_client costs ~50 ms, paid only once something is fetched.
        from modelport.metrics import FETCH_BYTES, FETCH_SECONDS

        self.inner = inner
        self._bytes = FETCH_BYTES.labels(scheme)
        self._seconds = FETCH_SECONDS.labels(scheme)

    def start(self, uri: str, files: int, total_bytes: int) -> None:
        self.inner.start(uri, files, total_bytes)

    def advance(self, nbytes: int) -> None:
        self._bytes.inc(nbytes)
        self.inner.advance(nbytes)

    def file_done(self, rel: str, size: int, seconds: float) -> None:
        self.inner.file_done(rel, size, seconds)

    def finish(self, summary: Summary) -> None:
        self._bytes.inc(0)  # the series exists from the first fetch on, cache hits included
        self._seconds.observe(summary.seconds)
        self.inner.finish(summary)

    def abort(self) -> None:
        self.inner.abort()


def make_reporter(stream: TextIO | None = None) -> Reporter:
    stream = stream or sys.stderr
    if stream.isatty():
        return RichReporter(stream)
    return JsonLinesReporter(stream)


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0
