"""The `serve` command up to the server: logging, the open-files limit, the event loop, and the
worker template the model will most likely run under, started before the server's own imports
(uvicorn, grpc, numpy: ~0.3 s) so that these overlap the template's (mlflow: ~1 s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import sys

from modelport import logs
from modelport.settings import Settings

log = logging.getLogger("modelport")


def serve(settings: Settings) -> int:
    logs.configure(settings.serve.log_level, settings.serve.log_format, access_log=settings.serve.access_log)
    for note in settings.serve.notes:
        log.info("%s", note)
    raise_open_files_limit()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(settings))
    return uvloop.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    opts = settings.serve
    if opts.worker_start == "fork" and settings.env.policy_kind in ("auto", "local"):
        # The likely interpreter's template imports mlflow while the server imports its own
        # modules and the model is fetched and checked.
        from modelport.workers.template import RUNTIME_DIR, launch_early

        await launch_early(opts.python or sys.executable, str(RUNTIME_DIR))
    from modelport.server import run_server

    return await run_server(settings)


def raise_open_files_limit() -> None:
    """Connections are file descriptors: allow as many as the hard limit lets --max-connections use."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
            )
