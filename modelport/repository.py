"""The set of models one server knows: each with a state and a reason, loaded and unloaded while
the server runs, with least-recently-used unloading under --max-loaded-models.

Loading a model (fetch, environment, workers) runs beside the requests to the other models; its
``ServedModel`` joins ``DataPlane.models`` only once a worker answers. Unloading takes the model out
of that dict first, so no new request reaches it, then waits for the requests it holds (its
``users``), then stops its batcher and workers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelport.errors import InvalidInput, ModelNotFound, ModelNotReady, ModelportError, RequestTimeout
from modelport.model import ServedModel

log = logging.getLogger("modelport.repository")

# The states Triton's and KServe's repository index report.
READY = "READY"
LOADING = "LOADING"
UNLOADING = "UNLOADING"
UNAVAILABLE = "UNAVAILABLE"

# A model's name is a URL path segment (/v2/models/NAME) and a folder name.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Given a model's name and URI, a started ServedModel (its workers answer), or an error.
Loader = Callable[[str, str], Awaitable[ServedModel]]


@dataclass
class Entry:
    name: str
    uri: str
    state: str = UNAVAILABLE
    reason: str = "not loaded"
    model: ServedModel | None = None
    # Evicted by the LRU, or never loaded under --max-loaded-models: the next request loads it.
    on_demand: bool = False
    loading: asyncio.Task[ServedModel] | None = field(default=None, repr=False)

    def index(self) -> dict[str, str]:
        state, reason = self.state, self.reason
        if self.model is not None and not self.model.ready:
            state, reason = UNAVAILABLE, "workers starting or restarting"
        return {"name": self.name, "version": "", "state": state, "reason": reason}


class ModelRepository:
    def __init__(
        self,
        loader: Loader,
        models: dict[str, ServedModel],
        directory: Path | None = None,
        max_loaded: int = 0,
        drain_timeout_s: float = 30.0,
        request_timeout_s: float = 0.0,
    ) -> None:
        self.loader = loader
        self.models = models  # DataPlane.models: the loaded ones, what requests are routed to
        self.directory = directory
        self.max_loaded = max_loaded  # 0 = no limit
        self.drain_timeout_s = drain_timeout_s
        self.request_timeout_s = request_timeout_s  # bounds a request's wait for an on-demand load
        self.entries: dict[str, Entry] = {}
        self._lock = asyncio.Lock()  # one change of the loaded set at a time (the LRU count)

    # --- what is known ---------------------------------------------------------------------------

    def add(self, name: str, uri: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            if not NAME.match(name):
                raise InvalidInput(f"{name!r} cannot name a model: use letters, digits, '_', '.' and '-'")
            entry = self.entries[name] = Entry(name, uri, on_demand=self.max_loaded > 0)
        else:
            entry.uri = uri
        return entry

    def adopt(self, model: ServedModel) -> None:
        """A model started outside the repository (the one MODEL_URI served as ever) joins it;
        its workers' readiness tells whether it can take requests."""
        entry = self.entries[model.name]
        entry.model, entry.state, entry.reason, entry.on_demand = model, READY, "", False
        model.last_used = time.monotonic()
        self.models[model.name] = model

    def scan(self) -> list[str]:
        """Model folders of --model-repository (one level, each holding an MLmodel), sorted."""
        if self.directory is None:
            return []
        found = sorted(
            p.name for p in self.directory.iterdir() if NAME.match(p.name) and (p / "MLmodel").is_file()
        )
        for name in found:
            if name not in self.entries:
                self.add(name, str(self.directory / name))
        return found

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        self.scan()  # folders the KServe agent (or a person) added since are listed too
        listed = [e.index() for e in self.entries.values()]
        return [m for m in listed if not ready_only or m["state"] == READY]

    def entry(self, name: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None and self.directory is not None and NAME.match(name):
            if (self.directory / name / "MLmodel").is_file():
                entry = self.add(name, str(self.directory / name))
        if entry is None:
            known = ", ".join(repr(n) for n in self.entries) or "none"
            where = f" or in {self.directory}" if self.directory is not None else ""
            raise ModelNotFound(f"model '{name}' is not served here{where} (models: {known})")
        return entry

    # --- requests -------------------------------------------------------------------------------

    async def acquire(self, name: str, deadline: float | None) -> ServedModel:
        """The loaded model, loading it first when it may be loaded on demand; ``deadline`` on the
        event loop's clock bounds the wait (RequestTimeout past it)."""
        entry = self.entry(name)
        if entry.model is not None:
            return entry.model
        if not entry.on_demand and entry.loading is None:
            raise ModelNotReady(
                f"model '{name}' is not loaded ({entry.reason}); load it with "
                f"POST /v2/repository/models/{name}/load"
            )
        task = entry.loading or asyncio.ensure_future(self.load(name))
        loop = asyncio.get_running_loop()
        if self.request_timeout_s > 0:
            limit = loop.time() + self.request_timeout_s
            deadline = limit if deadline is None else min(deadline, limit)
        timeout = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError as exc:
            raise RequestTimeout(
                f"model '{name}' was still loading when the request's time was up (--request-timeout)"
            ) from exc

    # --- changes --------------------------------------------------------------------------------

    async def load(self, name: str, uri: str | None = None) -> ServedModel:
        """Load (or reload, from the same or a new URI) a model; concurrent calls share one load.

        A reload serves the old copy until the new one answers, then drains and stops the old one.
        """
        known = uri is None or name in self.entries
        entry = self.entry(name) if known else self.add(name, uri or "")
        if entry.loading is not None and uri is None:
            return await asyncio.shield(entry.loading)
        # A context of its own: the load outlives the request that asked for it, and its log
        # lines are not that request's.
        loop = asyncio.get_running_loop()
        task = entry.loading = contextvars.Context().run(
            loop.create_task, self._load(entry, uri or entry.uri)
        )

        def done(t: asyncio.Task[ServedModel]) -> None:
            if entry.loading is t:
                entry.loading = None
            if not t.cancelled():
                t.exception()  # retrieved: a load no request waits for any more is logged, not warned of

        task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _load(self, entry: Entry, uri: str) -> ServedModel:
        if entry.model is None:
            entry.state, entry.reason = LOADING, "loading"
        await self._make_room(entry)
        started = time.perf_counter()
        try:
            model = await self.loader(entry.name, uri)
        except ModelportError as exc:
            if entry.model is None:
                entry.state, entry.reason = UNAVAILABLE, f"failed to load: {exc.message}"
                entry.on_demand = False  # a broken model is not retried at every request
            log.error("model '%s' failed to load: %s", entry.name, exc.message)
            raise
        except asyncio.CancelledError:
            if entry.model is None:
                entry.state, entry.reason = UNAVAILABLE, "loading was cancelled"
            raise
        # Read now, not when the load began: another load of the same name may have finished since.
        old = entry.model
        entry.model, entry.uri = model, uri  # a reload from a URI that failed keeps the old one
        entry.state, entry.reason = READY, ""
        entry.on_demand = False
        model.last_used = time.monotonic()
        self.models[entry.name] = model
        log.info("model '%s' loaded in %.2f s", entry.name, time.perf_counter() - started)
        if old is not None:
            await self._stop(old)
        return model

    async def unload(self, name: str, reason: str = "unloaded", on_demand: bool = False) -> None:
        """Take the model out of service, answer the requests it holds, then stop its workers."""
        entry = self.entry(name)
        if entry.loading is not None:
            entry.loading.cancel()
            await asyncio.gather(entry.loading, return_exceptions=True)
            entry.loading = None
        model = entry.model
        entry.on_demand = on_demand
        if model is None:
            entry.state, entry.reason = UNAVAILABLE, reason
            return
        entry.state, entry.reason = UNLOADING, "draining"
        entry.model = None
        if self.models.get(name) is model:
            del self.models[name]
        started = time.perf_counter()
        await self._stop(model)
        entry.state, entry.reason = UNAVAILABLE, reason
        log.info("model '%s' unloaded in %.2f s (%s)", name, time.perf_counter() - started, reason)

    async def _stop(self, model: ServedModel) -> None:
        loop = asyncio.get_running_loop()
        limit = loop.time() + self.drain_timeout_s
        while model.users and loop.time() < limit:
            await asyncio.sleep(0.02)
        if model.users:
            log.warning(
                "model '%s': %d request(s) still running after %.0f s; stopping its workers",
                model.name,
                model.users,
                self.drain_timeout_s,
            )
        model.pool.begin_shutdown()
        await model.batcher.stop()
        await model.pool.stop()

    async def _make_room(self, entry: Entry) -> None:
        """Under --max-loaded-models, unload the least recently used models to make room for one."""
        if not self.max_loaded or entry.model is not None:
            return
        async with self._lock:
            busy = [e for e in self.entries.values() if e is not entry and (e.model or e.loading)]
            while len(busy) >= self.max_loaded:
                loaded = [e for e in busy if e.model is not None]
                if not loaded:
                    break  # every slot is a load in flight: no model to evict yet
                victim = min(loaded, key=lambda e: e.model.last_used if e.model else 0.0)
                log.info(
                    "model '%s' unloaded to make room for '%s' (--max-loaded-models %d)",
                    victim.name,
                    entry.name,
                    self.max_loaded,
                )
                busy.remove(victim)
                await self.unload(victim.name, "unloaded to make room (--max-loaded-models)", True)

    async def stop_all(self) -> None:
        for entry in self.entries.values():
            if entry.loading is not None:
                entry.loading.cancel()
        await asyncio.gather(*(e.loading for e in self.entries.values() if e.loading), return_exceptions=True)
        models = [e.model for e in self.entries.values() if e.model is not None]
        for m in models:
            m.pool.begin_shutdown()
        await asyncio.gather(*(m.batcher.stop() for m in models), return_exceptions=True)
        await asyncio.gather(*(m.pool.stop() for m in models), return_exceptions=True)
