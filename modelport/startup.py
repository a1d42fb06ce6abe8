"""Which models a server serves, and loading them: MODEL_URI arguments (URI or NAME=URI) and
--model-repository folders, each model prepared, given its own environment, workers and batcher,
and started by the repository (``modelport.repository``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from modelport.dataplane import DataPlane
from modelport.errors import ModelLoadError, ModelportError
from modelport.model import ServedModel
from modelport.repository import NAME, ModelRepository
from modelport.settings import ServeSettings, Settings

log = logging.getLogger("modelport")


def parse_model_arg(arg: str) -> tuple[str | None, str]:
    """``NAME=URI`` or a plain URI. A URI may hold "=" itself (a query): only a valid name before
    the first "=" makes it a name."""
    name, sep, uri = arg.partition("=")
    if sep and uri and NAME.match(name):
        return name, uri
    return None, arg


def name_of(uri: str) -> str:
    """The default name of a model given without NAME=: its folder's (the URI's last segment)."""
    tail = uri.rstrip("/").rsplit("/", 1)[-1]
    return tail.split("?", 1)[0]


def model_args(opts: ServeSettings) -> list[tuple[str | None, str]]:
    args = list(opts.model_uris) or ([opts.model_uri] if opts.model_uri else [])
    return [parse_model_arg(a) for a in args]


def multi_model(opts: ServeSettings, specs: list[tuple[str | None, str]]) -> bool:
    """One MODEL_URI alone is served as ever: checked before a port opens, its failure fatal."""
    return len(specs) != 1 or bool(opts.model_repository)


def for_model(settings: Settings, name: str | None, uri: str) -> Settings:
    """The settings one model is prepared and served with: its URI and name."""
    serve = dataclasses.replace(settings.serve, model_uri=uri, model_name=name or settings.serve.model_name)
    return dataclasses.replace(settings, serve=serve)


def make_repository(settings: Settings) -> tuple[DataPlane, ModelRepository, list[tuple[str | None, str]]]:
    """The dataplane and repository, with every model named on the command line added (not loaded)."""
    opts = settings.serve
    specs = model_args(opts)
    directory = Path(opts.model_repository) if opts.model_repository else None
    if directory is not None and not directory.is_dir():
        raise ModelportError(f"--model-repository {directory}: no such folder")
    if opts.max_loaded_models and not multi_model(opts, specs):
        log.info("--max-loaded-models applies to models loaded later through the repository API")

    async def loader(name: str, uri: str) -> ServedModel:
        return await load_model(for_model(settings, name, uri), name)

    dataplane = DataPlane()
    repository = ModelRepository(
        loader,
        dataplane.models,
        directory=directory,
        max_loaded=opts.max_loaded_models,
        drain_timeout_s=max(1.0, opts.graceful_timeout_s - 2.0),
        request_timeout_s=opts.request_timeout_s,
    )
    dataplane.repository = repository
    dataplane.ready_when_empty = directory is not None
    if multi_model(opts, specs):
        seen: dict[str, str] = {}
        for name, uri in specs:
            name = name or name_of(uri)
            if not NAME.match(name):
                raise ModelportError(f"{uri}: cannot name a model {name!r}; give it one as NAME={uri}")
            if name in seen:
                raise ModelportError(
                    f"two models named {name!r} ({seen[name]} and {uri}): name them as NAME=URI"
                )
            seen[name] = uri
            repository.add(name, uri)
        if directory is not None:
            repository.scan()
        # Not ready from the moment the ports open until the start-up loads are over.
        dataplane.starting = opts.load_models_at_startup
    return dataplane, repository, specs


async def load_model(settings: Settings, name: str) -> ServedModel:
    """Fetch, check, pick the environment, start the workers: a model ready to serve, or an error."""
    try:
        return await _load_model(settings, name)
    except ModelportError:
        raise
    except Exception as exc:  # anything else must not take the server down, nor go unsaid
        log.exception("model '%s': unexpected error while loading it", name)
        raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc


async def _load_model(settings: Settings, name: str) -> ServedModel:
    from modelport.server import build_model, prepare  # server assembles; it imports this module

    model_dir, spec, python = await asyncio.to_thread(prepare, settings)
    model = await build_model(settings, model_dir, spec, python, name)
    try:
        await model.pool.start()
    except BaseException:
        model.pool.begin_shutdown()
        await model.batcher.stop()
        await model.pool.stop()
        raise
    return model


async def load_at_startup(repository: ModelRepository, dataplane: DataPlane, opts: ServeSettings) -> None:
    """Load the models known at start-up, all at once; readiness waits for them. A model that
    fails is left UNAVAILABLE with its reason, and the others serve."""
    if not opts.load_models_at_startup:
        return
    names = list(repository.entries)
    if opts.max_loaded_models:
        names = names[: opts.max_loaded_models]  # the others load on their first request
    try:
        await asyncio.gather(*(repository.load(n) for n in names), return_exceptions=True)
    finally:
        dataplane.starting = False


def summary(repository: ModelRepository) -> str:
    return ", ".join(
        f"{e.name} {e.state}" + (f" ({e.reason})" if e.reason else "") for e in repository.entries.values()
    )
