"""Serve a model with modelport's own app and workers, but with granian as the HTTP front.

For benchmarks only (granian is not a modelport dependency): `serve_bench.py --servers
modelport,modelport-granian` runs this beside `modelport serve` to compare the two fronts.

    python benchmarks/granian_front.py serve examples/iris --http-port 8080 [any `modelport serve` flag]

Everything behind HTTP is modelport's: flags parsed by modelport's own CLI parser into the same
settings, the model fetched and checked by `modelport.server.prepare`, built by `build_model`, its
workers started by `model.pool.start()` once the port is open (readiness answers 503 until then),
and the ASGI app `modelport.protocols.rest.App`. granian runs embedded in this one process, on this
process's event loop (uvloop when installed, as `modelport serve`), with one Rust I/O thread: the
nearest thing to uvicorn's single event loop. Protections are mapped where granian has them:
`--header-timeout` → `header_read_timeout`, `--max-header-bytes` → `max_buffer_size` (hyper's
read buffer, at least 8 KiB); granian has no keep-alive idle timeout and no connection cap
(`backpressure` bounds requests in progress, left at its default of the backlog, 2048).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.embed import Server

from modelport import server as mp_server
from modelport.cli import make_parser
from modelport.dataplane import DataPlane
from modelport.errors import ModelportError
from modelport.model import ServedModel
from modelport.protocols.rest import App
from modelport.server import build_model, prepare
from modelport.settings import Settings, build_settings

log = logging.getLogger("modelport.granian")

BACKLOG = 2048
# hyper refuses a read buffer below 8 KiB.
MIN_BUFFER = 8192


def parse(argv: Sequence[str], environ: dict[str, str]) -> Settings:
    """`modelport serve` flags (the same parser, so the same names, defaults and MODELPORT_* vars)."""
    args = make_parser().parse_args(list(argv))
    if args.command != "serve":
        raise SystemExit("granian_front: only `serve` is supported")
    flags = vars(args)
    flags["model_uri"] = flags.get("model_uri") or flags.get("model_dir")
    settings = build_settings(flags, environ)
    if not settings.serve.model_uri:
        raise SystemExit("granian_front: no model given")
    return settings


def make_app(settings: Settings, model: ServedModel) -> Any:
    """modelport's ASGI app for one model, built as `modelport.server` builds it."""
    return App(DataPlane({model.name: model}), settings.serve.max_body_bytes)


def make_server(settings: Settings, app: Any) -> Server:
    serve = settings.serve
    # Read with defaults: older checkouts' settings have no HTTP protections yet.
    header_timeout_s = getattr(serve, "header_timeout_s", 10.0)
    http1 = HTTP1Settings(
        header_read_timeout=max(1, int(header_timeout_s * 1000)) if header_timeout_s else 30_000,
        keep_alive=True,
        max_buffer_size=max(MIN_BUFFER, getattr(serve, "max_header_bytes", 64 * 1024)),
    )
    return Server(
        app,
        address=serve.host,
        port=serve.http_port,
        interface=Interfaces.ASGI,  # with lifespan: App answers startup/shutdown
        runtime_threads=1,
        http=HTTPModes.http1,
        websockets=False,
        backlog=BACKLOG,
        http1_settings=http1,
        log_enabled=True,
        log_level=LogLevels.warning,
        log_access=False,  # modelport's app writes its own access log (--access-log)
    )


async def run(settings: Settings) -> int:
    started = time.perf_counter()
    model_dir, spec, python = await asyncio.to_thread(prepare, settings)
    model = await build_model(settings, model_dir, spec, python)
    app = make_app(settings, model)
    server = make_server(settings, app)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    failure: list[ModelportError] = []

    async def load() -> None:
        try:
            await model.pool.start()
        except ModelportError as exc:
            failure.append(exc)
            log.error("model '%s' failed to load: %s", model.name, exc.message)
            server.stop()
            return
        log.warning(
            "model '%s' ready in %.2f s (launch to ready, granian front)",
            model.name,
            time.perf_counter() - started,
        )
        gc.collect()
        gc.freeze()

    loader = asyncio.create_task(load())
    try:
        await server.serve()
    finally:
        app.draining = True  # as modelport.server does: answers say `Connection: close` from now on
        model.pool.begin_shutdown()
        loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
        await model.batcher.stop()
        await model.pool.stop()
    return 1 if failure else 0


def setup_process(settings: Settings) -> None:
    """Logging and the open-files limit as `modelport serve` sets them (older checkouts: what they have)."""
    serve = settings.serve
    try:
        from modelport import logs
    except ImportError:
        mp_server.configure_logging(serve.log_level)  # type: ignore[attr-defined]
    else:
        logs.configure(serve.log_level, serve.log_format, access_log=serve.access_log)
    try:
        from modelport import boot
    except ImportError:
        boot = mp_server  # type: ignore[assignment]  # where older checkouts have it
    raise_limit = getattr(boot, "raise_open_files_limit", None)
    if raise_limit is not None:
        raise_limit()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse(sys.argv[1:] if argv is None else argv, dict(os.environ))
    setup_process(settings)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(settings))
    return uvloop.run(run(settings))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ModelportError as exc:
        print(f"granian_front: error: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
