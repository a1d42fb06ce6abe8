"""Assemble and run the server: fetch the model, check it, pick its interpreter, start
its workers, and serve every protocol on one HTTP port (and the Open Inference Protocol
over gRPC on --grpc-port, in the same event loop).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.dataplane import DataPlane
from modelport.envs import resolve_interpreter
from modelport.errors import EnvironmentError_, ModelportError
from modelport.mlmodel import (
    check_layout,
    read_model_spec,
    require_python_function,
    rewrite_for_mlflow,
    shadow_model_dir,
)
from modelport.mlmodel.types import ModelSpec
from modelport.model import ROW_WISE_FLAVORS, ServedModel
from modelport.protocols.httpserver import HttpServer, Limits
from modelport.protocols.rest import App
from modelport.settings import Settings
from modelport.startup import for_model, load_at_startup, make_repository, multi_model, summary
from modelport.storage import resolve_model
from modelport.storage.modelcar import wait_for_model
from modelport.storage.progress import make_reporter
from modelport.workers.batching import Batcher
from modelport.workers.pool import WorkerPool
from modelport.workers.template import RUNTIME_DIR, discard_early, launch_template, plan_for, take_early

if TYPE_CHECKING:
    from modelport.protocols.grpc_server import GrpcServer

log = logging.getLogger("modelport")


def batching_enabled(mode: str, spec: ModelSpec) -> bool:
    if mode == "on":
        return True
    if mode == "off":
        return False
    return spec.primary_flavor in ROW_WISE_FLAVORS


async def build_model(
    settings: Settings, model_dir: Path, spec: ModelSpec, python: str, name: str | None = None
) -> ServedModel:
    """Create the served model; its workers start with ``model.pool.start()``."""
    serve = settings.serve
    name = name or serve.model_name or model_dir.name

    load_paths: dict[str, str] = {}  # by the worker's mlflow version: the same for every (re)start

    async def prepare_load(hello: dict[str, Any]) -> str:
        mlflow_version = hello.get("mlflow")
        if not mlflow_version:
            raise EnvironmentError_(
                f"the worker interpreter {python} cannot import mlflow: no package provides it "
                "(neither mlflow nor mlflow-skinny is installed there)"
            )
        if mlflow_version not in load_paths:
            load_paths[mlflow_version] = await asyncio.to_thread(load_path_for, mlflow_version)
        return load_paths[mlflow_version]

    def load_path_for(mlflow_version: str) -> str:
        rewritten = rewrite_for_mlflow(spec, mlflow_version)
        if rewritten is None:
            return str(model_dir)
        shadow = shadow_model_dir(model_dir, rewritten, settings.cache_dir / "compat")
        log.info(
            "MLmodel rewritten for mlflow %s (saved by %s): loading from %s",
            mlflow_version,
            spec.mlflow_version,
            shadow,
        )
        return str(shadow)

    template = None
    if serve.worker_start == "fork":
        # Launched now unless one started early: its imports overlap the HTTP and gRPC fronts' start.
        template = take_early(python) or await launch_template(python, str(RUNTIME_DIR))
    pool = WorkerPool(
        python,
        serve.workers,
        prepare_load,
        load_timeout=serve.load_timeout_s,
        ping_timeout=serve.worker_ping_timeout_s,
        model=name,
        start=serve.worker_start,
        plan=plan_for(spec),
        template=template,
    )
    batcher = Batcher(
        pool.request,
        max_size=serve.batch.max_size,
        max_wait_s=serve.batch.max_wait_ms / 1000.0,
        dispatchers=serve.workers,
        capacity=pool,
        model=name,
    )
    batcher.enabled = batching_enabled(serve.batch.mode, spec)
    log.info(
        "model '%s' (%s flavor): adaptive batching %s",
        name,
        spec.primary_flavor,
        f"on (max {serve.batch.max_size} rows, max wait {serve.batch.max_wait_ms} ms)"
        if batcher.enabled
        else "off",
    )
    return ServedModel(name, spec, pool, batcher, request_timeout=serve.request_timeout_s)


def prepare(settings: Settings) -> tuple[Path, ModelSpec, str]:
    """Everything that can fail before a port is opened: fetch, parse, check, environment.

    Of ``settings.serve.model_uri``: one model; the repository prepares each of several alike.
    """
    uri = wait_for_model(settings.serve)  # MODEL_INIT_MODE=async: a modelcar links the model in later
    model_dir = resolve_model(uri, settings.storage, settings.cache_dir, make_reporter())
    spec = read_model_spec(model_dir)
    require_python_function(spec)
    check_layout(model_dir, spec)
    interpreter = resolve_interpreter(model_dir, settings)
    log.info("environment: %s", interpreter.reason)
    return model_dir, spec, interpreter.python


async def start_grpc(settings: Settings, dataplane: DataPlane, http: HttpServer) -> GrpcServer | None:
    """The gRPC front on --grpc-port (none when it is 0), in this event loop."""
    opts = settings.serve
    if not opts.grpc_port:
        return None
    # Workers start by fork+exec, so grpc's fork handlers have nothing to do; left on, the C core
    # logs a line outside the log format at every worker (re)start. Read when grpc is imported.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
    from modelport.protocols.grpc_server import GrpcServer  # grpcio loads only when gRPC is served

    front = GrpcServer(
        dataplane,
        opts.host,
        opts.grpc_port,
        opts.max_body_bytes,
        max_metadata_bytes=opts.max_header_bytes,
        idle_timeout_s=opts.keep_alive_timeout_s,
    )
    try:
        await front.start()
    except OSError as exc:
        await http.stop()
        raise ModelportError(f"cannot listen on {opts.host}:{opts.grpc_port} (gRPC): {exc}") from exc
    return front


async def run_server(settings: Settings) -> int:
    started = time.perf_counter()
    opts = settings.serve
    dataplane, repository, specs = make_repository(settings)
    first: ServedModel | None = None
    if not multi_model(opts, specs):
        # One model: everything that can fail does so before a port opens (exit 2), as always.
        name, uri = specs[0]
        one = for_model(settings, name, uri)
        model_dir, spec, python = await asyncio.to_thread(prepare, one)
        first = await build_model(one, model_dir, spec, python)
        repository.add(first.name, uri)
        repository.adopt(first)  # routed to at once: its workers' readiness answers while they start
    app = App(dataplane, opts.max_body_bytes)
    limits = Limits(opts.max_header_bytes, opts.header_timeout_s, opts.max_connections)
    # The drain leaves a little of the grace period for stopping the workers.
    drain_s = max(1.0, opts.graceful_timeout_s - 2.0)
    http = HttpServer(app, opts.host, opts.http_port, limits, opts.keep_alive_timeout_s, drain_s)
    try:
        await http.start()
    except OSError as exc:
        raise ModelportError(
            f"cannot listen on {settings.serve.host}:{settings.serve.http_port}: {exc}"
        ) from exc
    grpc_front = await start_grpc(settings, dataplane, http)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    failure: list[Exception] = []

    async def load() -> None:
        if first is None:
            await load_at_startup(repository, dataplane, opts)
            log.info("start-up loads done in %.2f s: %s", time.perf_counter() - started, summary(repository))
        else:
            try:
                await first.pool.start()
            except Exception as exc:  # a ModelportError says why; anything else is a fault of ours
                failure.append(exc)
                unexpected = not isinstance(exc, ModelportError)
                log.error("model '%s' failed to load: %s", first.name, exc, exc_info=unexpected)
                stop.set()
                return
            log.info(
                "model '%s' ready in %.2f s (launch to ready)", first.name, time.perf_counter() - started
            )
        gc.collect()
        gc.freeze()  # start-up objects live forever: keep them out of every later collection

    loader = asyncio.create_task(load())
    try:
        await stop.wait()
        log.info("shutting down: answering the requests received, then stopping (--graceful-timeout)")
    finally:
        app.draining = True
        if grpc_front is not None:
            await grpc_front.begin_drain()
        for model in [*dataplane.models.values(), *([first] if first is not None else [])]:
            model.pool.begin_shutdown()
        if grpc_front is None:
            await http.stop()
        else:
            await asyncio.gather(http.stop(), grpc_front.stop(drain_s))
        loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
        if first is not None and first.name not in dataplane.models:
            await first.batcher.stop()
            await first.pool.stop()
        await repository.stop_all()
        await discard_early()
    return 1 if failure else 0
