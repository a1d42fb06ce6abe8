"""The one typed settings object, built at the CLI edge and passed down.

Nothing below this module reads ``os.environ``: flags win over ``MODELPORT_*``
variables, which win over defaults. Back-end specific settings (storage
credentials, environment building) live in their packages' ``config`` modules
and are composed here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.cache import parse_bytes
from modelport.envs.config import EnvSettings
from modelport.errors import ModelportError
from modelport.storage.config import StorageSettings

DEFAULT_MAX_BODY = 100 * 1024 * 1024


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("MODELPORT_CACHE_DIR"):
        return Path(environ["MODELPORT_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "/tmp")) / ".cache")
    return Path(base) / "modelport"


@dataclass(frozen=True)
class BatchSettings:
    # "auto": on for flavors known to treat rows independently, off otherwise.
    mode: str = "auto"
    max_size: int = 64
    max_wait_ms: float = 2.0


@dataclass(frozen=True)
class ServeSettings:
    model_uri: str = ""
    model_name: str = ""
    # Several models: every MODEL_URI given (each URI or NAME=URI); one alone is model_uri.
    model_uris: tuple[str, ...] = ()
    # A folder of model folders (KServe's /mnt/models): each holding an MLmodel is a model.
    model_repository: str = ""
    load_models_at_startup: bool = True
    # Models loaded at once; past it the least recently used is unloaded (0 = no limit).
    max_loaded_models: int = 0
    host: str = "0.0.0.0"
    http_port: int = 8080
    grpc_port: int = 8081
    workers: int = 1
    # "fork": workers forked from a warm template (spawned where that is unsafe); "spawn": each a
    # fresh interpreter.
    worker_start: str = "fork"
    max_body_bytes: int = DEFAULT_MAX_BODY
    batch: BatchSettings = field(default_factory=BatchSettings)
    # Interpreter the workers run under; None means the current one (or the
    # model environment's, once resolved).
    python: str | None = None
    load_timeout_s: float = 600.0
    log_level: str = "info"
    log_format: str = "text"  # text | json
    access_log: bool = False
    # Request lifecycle: 0 means no request timeout.
    request_timeout_s: float = 60.0
    worker_ping_timeout_s: float = 10.0
    graceful_timeout_s: float = 30.0
    # HTTP admission.
    max_connections: int = 1000
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 120.0
    # KServe's MODEL_INIT_MODE: "async" (modelcars) means the model folder may appear after start.
    model_init_mode: str = ""
    model_wait_timeout_s: float = 300.0
    # Logged once at start-up (variables read but not acted on).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    serve: ServeSettings = field(default_factory=ServeSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    env: EnvSettings = field(default_factory=EnvSettings)
    cache_dir: Path = field(default_factory=lambda: default_cache_dir(os.environ))
    # Budget for the model and environment cache together (least recently used evicted); None = none.
    cache_max_bytes: int | None = None


# KServe's kserve-mlserver runtime starts its image with no arguments and only these variables
# (MLSERVER_MODEL_NAME and MLSERVER_MODEL_URI injected by the controller): read below MODELPORT_*,
# they let modelport's image replace MLServer's in that runtime unchanged.
MLSERVER_VARIABLES = {
    "model_uri": "MLSERVER_MODEL_URI",
    "model_name": "MLSERVER_MODEL_NAME",
    "http_port": "MLSERVER_HTTP_PORT",
    "grpc_port": "MLSERVER_GRPC_PORT",
}


def _env_value(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) of the first non-empty of MODELPORT_<NAME> and its MLSERVER_* fallback."""
    names = [f"MODELPORT_{name.upper()}"] + ([MLSERVER_VARIABLES[name]] if name in MLSERVER_VARIABLES else [])
    for var in names:
        value = environ.get(var)
        if value:
            return var, value
    return None


def _pick(flags: Mapping[str, Any], environ: Mapping[str, str], name: str, cast: Any, default: Any) -> Any:
    value = flags.get(name)
    if value is not None:
        return cast(value)
    found = _env_value(environ, name)
    if found is None:
        return default
    var, env = found
    try:
        return cast(env)
    except ValueError as exc:
        raise ModelportError(f"{var}={env!r} is not a valid {cast.__name__}") from exc


def _startup_notes(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Lines the server logs once at start-up about variables it reads but does not act on."""
    implementation = environ.get("MLSERVER_MODEL_IMPLEMENTATION")
    if implementation:
        return (
            f"MLSERVER_MODEL_IMPLEMENTATION={implementation!r} ignored: modelport loads every MLflow "
            "flavor itself",
        )
    return ()


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError(f"log format {value!r}: expected text or json")
    return value


def _worker_start(value: str) -> str:
    if value not in ("fork", "spawn"):
        raise ValueError(f"worker start {value!r}: expected fork or spawn")
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def _count(value: Any) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number


def build_settings(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Combine parsed CLI flags (None = not given) with the environment."""
    d = ServeSettings()
    b = BatchSettings()
    batch = BatchSettings(
        mode=_pick(flags, environ, "batching", str, b.mode),
        max_size=_pick(flags, environ, "max_batch_size", int, b.max_size),
        max_wait_ms=_pick(flags, environ, "max_batch_wait_ms", float, b.max_wait_ms),
    )
    uris = tuple(flags.get("model_uris") or ())
    if len(uris) == 1 and not flags.get("model_uri"):
        flags = {**flags, "model_uri": uris[0]}  # one MODEL_URI: the single-model server
    serve = ServeSettings(
        model_uri=_pick(flags, environ, "model_uri", str, d.model_uri),
        model_name=_pick(flags, environ, "model_name", str, d.model_name),
        model_uris=uris,
        model_repository=_pick(flags, environ, "model_repository", str, d.model_repository),
        load_models_at_startup=_pick(
            flags, environ, "load_models_at_startup", _boolean, d.load_models_at_startup
        ),
        max_loaded_models=_pick(flags, environ, "max_loaded_models", _count, d.max_loaded_models),
        host=_pick(flags, environ, "host", str, d.host),
        http_port=_pick(flags, environ, "http_port", int, d.http_port),
        grpc_port=_pick(flags, environ, "grpc_port", int, d.grpc_port),
        workers=_pick(flags, environ, "workers", int, d.workers),
        worker_start=_pick(flags, environ, "worker_start", _worker_start, d.worker_start),
        max_body_bytes=_pick(flags, environ, "max_body_bytes", int, d.max_body_bytes),
        batch=batch,
        python=_pick(flags, environ, "python", str, d.python),
        load_timeout_s=_pick(flags, environ, "load_timeout", float, d.load_timeout_s),
        log_level=_pick(flags, environ, "log_level", str, d.log_level),
        log_format=_pick(flags, environ, "log_format", _log_format, d.log_format),
        access_log=_pick(flags, environ, "access_log", _boolean, d.access_log),
        request_timeout_s=_pick(flags, environ, "request_timeout", float, d.request_timeout_s),
        worker_ping_timeout_s=_pick(flags, environ, "worker_ping_timeout", float, d.worker_ping_timeout_s),
        graceful_timeout_s=_pick(flags, environ, "graceful_timeout", float, d.graceful_timeout_s),
        max_connections=_pick(flags, environ, "max_connections", int, d.max_connections),
        max_header_bytes=_pick(flags, environ, "max_header_bytes", int, d.max_header_bytes),
        header_timeout_s=_pick(flags, environ, "header_timeout", float, d.header_timeout_s),
        keep_alive_timeout_s=_pick(flags, environ, "keep_alive_timeout", float, d.keep_alive_timeout_s),
        model_init_mode=(environ.get("MODEL_INIT_MODE") or d.model_init_mode).strip().lower(),
        model_wait_timeout_s=_pick(flags, environ, "model_wait_timeout", float, d.model_wait_timeout_s),
        notes=_startup_notes(environ),
    )
    cache = flags.get("cache_dir") or None
    try:
        cache_max_bytes = _pick(flags, environ, "cache_max_bytes", parse_bytes, None)
    except ValueError as exc:
        raise ModelportError(f"--cache-max-bytes: {exc}") from exc
    try:
        storage = StorageSettings.from_environ(environ)
        env = EnvSettings.from_flags(flags, environ)
    except ValueError as exc:
        raise ModelportError(f"invalid setting in the environment: {exc}") from exc
    return Settings(
        serve=serve,
        storage=storage,
        env=env,
        cache_dir=Path(cache) if cache else default_cache_dir(environ),
        cache_max_bytes=cache_max_bytes,
    )
