"""A pool of worker processes for one model: load, dispatch, ping, restart.

A worker that dies is restarted and reloads the model; requests it held fail at once
with ``WorkerCrashed``. A worker that holds a request past its deadline, or leaves a
ping unanswered longer than the ping timeout, is killed at once, then restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from modelport import metrics
from modelport.errors import ModelLoadError, ModelNotReady, ModelportError
from modelport.inference import Deadline
from modelport.workers.ipc import Reply, load_request
from modelport.workers.process import WorkerProcess

log = logging.getLogger("modelport.workers")

# Given a worker's hello (its Python, mlflow and numpy versions), return the folder to load.
PrepareLoad = Callable[[dict[str, Any]], Awaitable[str]]

RESTART_CAUSES = ("exit", "timeout", "unresponsive")


class WorkerPool:
    def __init__(
        self,
        python: str,
        size: int,
        prepare_load: PrepareLoad,
        load_timeout: float = 600.0,
        ping_timeout: float = 10.0,
        model: str = "",
    ) -> None:
        self.workers = [WorkerProcess(i, python, self._ready_changed) for i in range(max(1, size))]
        self.prepare_load = prepare_load
        self.load_timeout = load_timeout
        self.ping_timeout = ping_timeout
        # Often enough that a silent worker is found within the timeout plus a little.
        self.ping_interval = min(1.0, max(0.05, ping_timeout / 5))
        self.model = model
        self.load_info: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._ready_count = 0
        self._ready_event = asyncio.Event()
        self._workers_ready = metrics.WORKERS_READY.labels(model)
        self._workers_ready.set(0)
        self._predict_seconds = metrics.PREDICT_SECONDS.labels(model)
        self._load_seconds = metrics.MODEL_LOAD_SECONDS.labels(model)
        self._restarts = {cause: metrics.WORKER_RESTARTS.labels(model, cause) for cause in RESTART_CAUSES}

    @property
    def ready(self) -> bool:
        """True while at least one worker can take a request."""
        return self._ready_count > 0

    async def wait_ready(self) -> None:
        """Return once a worker can take a request."""
        await self._ready_event.wait()

    def _ready_changed(self) -> None:
        count = sum(1 for w in self.workers if w.ready)
        self._ready_count = count
        self._workers_ready.set(count)
        if count:
            self._ready_event.set()
        else:
            self._ready_event.clear()

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
            reply, _ = await asyncio.wait_for(worker.request(load_request(path)), self.load_timeout)
        except asyncio.TimeoutError as exc:
            worker.kill()
            raise ModelLoadError(f"loading the model took longer than {self.load_timeout:.0f} s") from exc
        except ModelportError as exc:
            await worker.stop()
            raise ModelLoadError(exc.message) from exc
        worker.ready = True
        self.load_info = {**hello, **reply, "start_s": time.perf_counter() - started}
        if reply.get("load_s") is not None:
            self._load_seconds.observe(reply["load_s"])
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
            cause = worker.kill_cause or "exit"
            self._restarts[cause].inc()
            if cause == "exit":
                log.error("worker %d exited (code %s); restarting it", worker.index, code)
            else:
                log.error("worker %d was killed (%s); restarting it", worker.index, worker.kill_reason)
            while not self._closing:
                try:
                    await self._start_one(worker)
                    backoff = 0.5
                    break
                except ModelportError as exc:
                    log.error(
                        "restarting worker %d failed: %s; retrying in %.1f s", worker.index, exc, backoff
                    )
                    if worker.alive:
                        worker.kill()
                        await worker.wait()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)

    async def _ping_loop(self) -> None:
        # One ping outstanding per worker at a time; no task or timer per ping.
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.ping_interval)
            now = loop.time()
            for worker in self.workers:
                if not worker.ready:
                    continue
                if worker.ping_sent is None:
                    worker.send_ping(now)
                elif now - worker.ping_sent > self.ping_timeout:
                    worker.condemn(
                        "unresponsive",
                        f"it did not answer a ping for {self.ping_timeout:g} s (--worker-ping-timeout)",
                    )

    def pick(self) -> WorkerProcess:
        ready = [w for w in self.workers if w.ready]
        if not ready:
            raise ModelNotReady("the model is not ready: its workers are starting or restarting")
        return min(ready, key=lambda w: w.load)

    async def request(
        self, header: dict[str, Any], buffers: Sequence[Any] = (), deadline: Deadline | None = None
    ) -> Reply:
        reply = await self.pick().request(header, buffers, deadline)
        seconds = reply[0].get("predict_s")
        if seconds is not None:
            self._predict_seconds.observe(seconds)
        return reply

    def begin_shutdown(self) -> None:
        """From now on a worker that exits is not restarted (its exit is part of shutting down)."""
        self._closing = True

    async def stop(self) -> None:
        self._closing = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
