"""A pool of worker processes for one model: load, dispatch, ping, restart.

A worker that dies is restarted and reloads the model; requests it held fail at once
with ``WorkerCrashed`` (503). A worker that stops answering pings is killed, then restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from modelport.errors import ModelLoadError, ModelNotReady, ModelportError
from modelport.workers.process import Reply, WorkerProcess

log = logging.getLogger("modelport.workers")

# Given a worker's hello (its Python, mlflow and numpy versions), return the folder to load.
PrepareLoad = Callable[[dict[str, Any]], Awaitable[str]]


class WorkerPool:
    def __init__(
        self,
        python: str,
        size: int,
        prepare_load: PrepareLoad,
        load_timeout: float = 600.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 30.0,
    ) -> None:
        self.workers = [WorkerProcess(i, python) for i in range(max(1, size))]
        self.prepare_load = prepare_load
        self.load_timeout = load_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.load_info: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def ready(self) -> bool:
        return any(w.ready for w in self.workers)

    async def start(self) -> None:
        """Start every worker and load the model; raise if the first load fails."""
        await asyncio.gather(*(self._start_one(w) for w in self.workers))
        for w in self.workers:
            self._tasks.append(asyncio.create_task(self._supervise(w)))
        self._tasks.append(asyncio.create_task(self._ping_loop()))

    async def _start_one(self, worker: WorkerProcess) -> None:
        started = time.perf_counter()
        hello = await worker.start(timeout=self.load_timeout)
        try:
            path = await self.prepare_load(hello)
        except ModelportError:
            await worker.stop()
            raise
        try:
            reply, _ = await asyncio.wait_for(
                worker.request({"op": "load", "path": path, "warm_up": True}), self.load_timeout
            )
        except asyncio.TimeoutError as exc:
            worker.kill()
            raise ModelLoadError(f"loading the model took longer than {self.load_timeout:.0f} s") from exc
        except ModelportError as exc:
            await worker.stop()
            raise ModelLoadError(exc.message) from exc
        worker.ready = True
        self.load_info = {**hello, **reply, "start_s": time.perf_counter() - started}
        warm = reply.get("warm_up_s")
        log.info(
            "worker %d (pid %s, python %s, mlflow %s) loaded the model in %.2f s%s%s",
            worker.index,
            hello.get("pid"),
            hello.get("python"),
            hello.get("mlflow"),
            reply.get("load_s", 0.0),
            f", warm-up prediction {warm * 1000:.1f} ms"
            if warm is not None
            else ", no input example to warm up",
            ", verified sklearn fast path on" if reply.get("fast_path") else "",
        )

    async def _supervise(self, worker: WorkerProcess) -> None:
        backoff = 0.5
        while not self._closing:
            code = await worker.wait()
            if self._closing:
                return
            log.error("worker %d exited (code %s); restarting it", worker.index, code)
            while not self._closing:
                try:
                    await self._start_one(worker)
                    backoff = 0.5
                    break
                except ModelportError as exc:
                    log.error(
                        "restarting worker %d failed: %s; retrying in %.1f s", worker.index, exc, backoff
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)

    async def _ping_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.ping_interval)
            await asyncio.gather(*(self._ping(w) for w in self.workers if w.ready))

    async def _ping(self, worker: WorkerProcess) -> None:
        try:
            await asyncio.wait_for(worker.request({"op": "ping"}), self.ping_timeout)
        except asyncio.TimeoutError:
            log.error(
                "worker %d did not answer a ping in %.0f s; killing it", worker.index, self.ping_timeout
            )
            worker.kill()
        except ModelportError:
            pass  # it died meanwhile: its supervisor restarts it

    def pick(self) -> WorkerProcess:
        ready = [w for w in self.workers if w.ready]
        if not ready:
            raise ModelNotReady("the model is not ready: its workers are starting or restarting")
        return min(ready, key=lambda w: w.load)

    async def request(self, header: dict[str, Any], buffers: Sequence[Any] = ()) -> Reply:
        return await self.pick().request(header, buffers)

    def begin_shutdown(self) -> None:
        """From now on a worker that exits is not restarted (its exit is part of shutting down)."""
        self._closing = True

    async def stop(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
