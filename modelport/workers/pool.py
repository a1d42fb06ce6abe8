"""A pool of worker processes for one model: load, dispatch, ping, restart.

A worker that dies is restarted and reloads the model; requests it held fail at once
with ``WorkerCrashed``. A worker that holds a request past its deadline, or leaves a
ping unanswered longer than the ping timeout, is killed at once, then restarted.
With ``start="fork"`` workers are forked from a warm template (``workers.template``),
which is itself restarted if it dies; where forking is unsafe they are spawned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from modelport import metrics
from modelport.errors import ModelLoadError, ModelNotReady, ModelportError
from modelport.inference import Deadline
from modelport.workers.ipc import Reply, load_request
from modelport.workers.process import WorkerProcess
from modelport.workers.template import RUNTIME_DIR, ForkPlan, ForkUnsafe, Template, fork_unavailable

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
        start: str = "spawn",
        plan: ForkPlan | None = None,
        template: Template | None = None,
    ) -> None:
        self.python = python
        self.workers = [WorkerProcess(i, python, self._ready_changed) for i in range(max(1, size))]
        # "fork" (from a warm template) or "spawn"; fork turns into spawn where it is unsafe.
        self.start_mode = start
        self.plan = plan or ForkPlan((), False, "loaded in each worker after the fork")
        self.template = template  # may be handed over already launched (start-up overlap)
        self._template_lock = asyncio.Lock()
        self._workdir = template.cwd if template is not None else ""
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
        # Workers run in private folders: what MLflow writes there (its default tracking store,
        # ./mlruns or ./mlflow.db) never lands in the user's folder.
        self._workdir = self._workdir or tempfile.mkdtemp(prefix="modelport-workers-")
        for w in self.workers:
            w.cwd = os.path.join(self._workdir, f"worker-{w.index}")
            os.mkdir(w.cwd)
        if self.start_mode == "fork":
            why = fork_unavailable()
            if why is not None:
                self._fall_back(why)
        await self._template_ready()
        await asyncio.gather(*(self._start_one(w) for w in self.workers))
        for w in self.workers:
            self._tasks.append(asyncio.create_task(self._supervise(w)))
        self._tasks.append(asyncio.create_task(self._ping_loop()))

    def _fall_back(self, why: str) -> None:
        self.start_mode = "spawn"
        log.warning("model '%s': workers are spawned, not forked from a template: %s", self.model, why)
        if self.template is not None:
            self._tasks.append(asyncio.create_task(self.template.stop()))
            self.template = None

    async def _template_ready(self) -> Template | None:
        """The running template (started again if it died), or None when workers are spawned."""
        async with self._template_lock:
            if self.start_mode != "fork":
                return None
            if self.template is not None and self.template.ready_for_forks:
                return self.template
            try:
                self.template = await self._new_template(self.template)
            except ForkUnsafe as exc:
                self.template = None
                self._fall_back(str(exc))
                return None
            self._tasks.append(asyncio.create_task(self._watch(self.template)))
            return self.template

    async def _new_template(self, launched: Template | None) -> Template:
        plan = self.plan
        while True:
            template = launched if launched is not None and not launched.gone else None
            launched = None
            if template is None:
                template = Template(self.python, self._workdir)
                await template.launch(str(RUNTIME_DIR))
            template.cwd = self._workdir
            try:
                hello = await template.ready(self.load_timeout)
                path = os.path.abspath(await self.prepare_load(hello))
                reply = await template.prepare(plan, path if plan.preload else None)
            except ModelNotReady as exc:  # the template failed to load the model: let each worker try
                await template.stop()
                if not plan.preload:
                    raise ForkUnsafe(exc.message) from exc
                reply = {"load_unsafe": exc.message}
            except BaseException:
                await template.stop()
                raise
            if plan.preload and reply.get("load_unsafe"):
                log.info("model '%s': %s; workers load it after the fork", self.model, reply["load_unsafe"])
                plan = self.plan = dataclasses.replace(plan, preload=False, why=reply["load_unsafe"])
                await template.stop()
                continue
            template.prepared = True
            if reply.get("load_s") is not None:
                self._load_seconds.observe(reply["load_s"])
            log.info(
                "model '%s': worker template pid %s ready (imports %.2f s%s); %s",
                self.model,
                template.pid,
                hello.get("import_s", 0.0),
                f", model loaded in {reply['load_s']:.2f} s" if reply.get("load_s") is not None else "",
                plan.why,
            )
            return template

    async def _watch(self, template: Template) -> None:
        code = await template.wait()
        if self._closing or template is not self.template:
            return
        log.error(
            "model '%s': the worker template (pid %s) exited with code %s; starting a new one",
            self.model,
            template.pid,
            code,
        )
        try:
            await self._template_ready()
        except Exception as exc:  # the next worker start tries again; a fault of ours gets its traceback
            unexpected = not isinstance(exc, ModelportError)
            log.error("model '%s': the new worker template failed: %s", self.model, exc, exc_info=unexpected)

    async def _start_one(self, worker: WorkerProcess) -> None:
        started = time.perf_counter()
        template = await self._template_ready()
        hello = await worker.start(timeout=self.load_timeout, template=template)
        try:
            path = os.path.abspath(await self.prepare_load(hello))
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
        if reply.get("load_s") is not None and not reply.get("preloaded"):
            self._load_seconds.observe(reply["load_s"])  # (a preloaded model was counted at the template)
        warm = reply.get("warm_up_s")
        log.info(
            "worker %d (pid %s, %s, python %s, mlflow %s) %s in %.2f s%s%s",
            worker.index,
            hello.get("pid"),
            f"forked from template pid {template.pid}" if template is not None else "spawned",
            hello.get("python"),
            hello.get("mlflow"),
            "was ready with the template's model" if reply.get("preloaded") else "loaded the model",
            time.perf_counter() - started if reply.get("preloaded") else reply.get("load_s", 0.0),
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
                # Any error, not only ours: an OSError (no fds left to start a process) is retried too;
                # one that is not a ModelportError is logged with its traceback.
                except Exception as exc:
                    log.error(
                        "restarting worker %d failed: %s; retrying in %.1f s",
                        worker.index,
                        exc,
                        backoff,
                        exc_info=not isinstance(exc, ModelportError),
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
        if self.template is not None:
            await self.template.stop()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
