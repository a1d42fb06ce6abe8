"""The --env policies: pick the interpreter a model's workers run under, building it if needed.

Each policy returns an Interpreter whose `reason` is the one line the server logs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelport import cache as store
from modelport.envs import cache, conda, drift, tarball
from modelport.envs.build import (
    Progress,
    build_uv_env,
    exclude_newer,
    run_tool,
    tool_settings,
    uv_binary,
    verify_env,
)
from modelport.envs.pythons import BasePython, find_base_python
from modelport.envs.requirements import ModelEnv, read_model_env
from modelport.errors import EnvironmentError_, StorageError

if TYPE_CHECKING:
    from modelport.settings import Settings

log = logging.getLogger("modelport.envs")


@dataclass(frozen=True)
class Interpreter:
    python: str
    reason: str
    # The environment folder when the interpreter is not the server's own.
    prefix: str | None = None
    # Seconds spent building or unpacking (0 when cached or local).
    build_s: float = 0.0


def _quiet(line: str) -> None:
    log.debug("%s", line)


def resolve_interpreter(model_dir: Path, settings: Settings, progress: Progress | None = None) -> Interpreter:
    """Return the interpreter the model's workers run under, per `settings.env.policy`."""
    progress = progress or _quiet
    settings = with_tools(settings)
    interp = _resolve(Path(model_dir), settings, progress)
    if settings.cache_max_bytes is not None:
        # Within budget after every start: the model just fetched counts too. Entries in use
        # (ours included) are skipped.
        store.prune(settings.cache_dir, settings.cache_max_bytes)
    return interp


def with_tools(settings: Settings) -> Settings:
    """Settings whose environment variables for uv are decided (cache, link mode, downloads)."""
    return dataclasses.replace(settings, env=tool_settings(settings.env, settings.cache_dir))


def _resolve(model_dir: Path, settings: Settings, progress: Progress) -> Interpreter:
    policy = settings.env.policy_kind
    if policy == "local":
        return _local(model_dir, settings)
    if policy == "auto":
        return _auto(model_dir, settings, progress)
    if policy == "uv":
        return _uv(read_model_env(model_dir), settings, progress, "uv")
    if policy == "conda":
        return _conda(read_model_env(model_dir), settings, progress)
    if policy == "tarball":
        return _tarball(model_dir, settings, progress)
    if policy == "path":
        return _path(model_dir, settings)
    raise EnvironmentError_(
        f"unknown environment policy {settings.env.policy!r}: "
        "use auto, local, uv, conda, tarball[:URI] or path:DIR"
    )


def local_python(settings: Settings) -> str:
    return settings.serve.python or sys.executable


def drift_report(model: ModelEnv, python: str, settings: Settings) -> drift.DriftReport:
    return drift.diff(model, drift.probe_interpreter(python, settings.env.process_environ))


def _local(model_dir: Path, settings: Settings) -> Interpreter:
    python = local_python(settings)
    report = drift_report(read_model_env(model_dir), python, settings)
    if report.blocking and settings.env.strict:
        raise EnvironmentError_(
            f"the model's requirements differ from {python} (--strict-env): {report.summary()}; "
            "use --env auto or --env uv to run it in its own environment"
        )
    if report.blocking:
        return Interpreter(python, f"local: {python}; WARNING drift that matters: {report.summary()}")
    return Interpreter(python, f"local: {python}{_minor_note(report)}")


def _minor_note(report: drift.DriftReport) -> str:
    n = len(report.drifted)
    return f" ({n} difference{'s' if n != 1 else ''} that do not matter)" if n else ", no drift"


def _auto(model_dir: Path, settings: Settings, progress: Progress) -> Interpreter:
    model = read_model_env(model_dir)
    python = local_python(settings)
    report = drift_report(model, python, settings)
    if not report.blocking:
        return Interpreter(python, f"auto: {python} satisfies the model's requirements{_minor_note(report)}")
    return _uv(model, settings, progress, f"auto: {report.summary()}")


def build_env(
    model_dir: Path, settings: Settings, progress: Progress | None = None, base_python: str | None = None
) -> Interpreter:
    """Build (or reuse) the model's uv environment whatever the policy; `modelport env build`.

    With --env conda the environment is built with conda from the model's conda.yaml instead.
    """
    settings = with_tools(settings)
    model = read_model_env(Path(model_dir))
    if settings.env.policy_kind == "conda":
        return _conda(model, settings, progress or _quiet)
    return _uv(model, settings, progress or _quiet, "build", base_python)


def _uv(
    model: ModelEnv, settings: Settings, progress: Progress, why: str, base_python: str | None = None
) -> Interpreter:
    uv = uv_binary()
    if base_python:
        base = BasePython(
            Path(base_python),
            drift.probe_interpreter(base_python, settings.env.process_environ).python_version,
            "given with --python",
        )
    else:
        base = find_base_python(model.python_version, settings.env, uv)
    as_of = exclude_newer(model, settings.env)
    key = cache.cache_key("uv", model.digest, base.version, *([f"exclude-newer={as_of}"] if as_of else []))
    root = settings.cache_dir / "envs"

    def build(tmp: Path) -> None:
        log.info(
            "building the model's environment with uv: Python %s (%s), %s%s%s%s",
            base.version,
            base.note,
            model.describe(),
            " (inferred from MLmodel: the model carries no environment files)" if model.inferred else "",
            f", resolved as of {as_of}" if as_of else "",
            " (offline)" if settings.env.offline else "",
        )
        if model.unmapped:
            log.warning(
                "%s: conda packages with no PyPI counterpart, left out: %s",
                model.source,
                ", ".join(model.unmapped),
            )
        build_uv_env(model, base, tmp, settings.env, progress)

    def finish(entry: Path) -> dict[str, object]:
        versions = verify_env(
            entry / "bin" / "python", model.loader_module, dict(settings.env.process_environ), model.model_dir
        )
        return {
            "kind": "uv",
            "python": "bin/python",
            "base": str(base.path),
            "versions": versions,
            "requirements": [str(r) for r in model.requirements],
            "added": list(model.added),
            "inferred": list(model.inferred),
            "resolved_as_of": as_of,
        }

    hit = cache.get_or_build(root, key, build, finish, on_wait=log.info, max_bytes=settings.cache_max_bytes)
    _record_build("uv", hit)
    python = str(hit.path / "bin" / "python")
    note = "" if base.note == "exact" else f", Python {base.note}"
    if model.inferred:
        note += f"; environment inferred from MLmodel ({', '.join(model.inferred)}): the model carries none"
    if hit.built:
        reason = f"{why} → built uv env at {hit.path} in {hit.seconds:.1f} s{note}"
    else:
        reason = f"{why} → cached uv env at {hit.path}{note}"
    return Interpreter(python, reason, str(hit.path), hit.seconds if hit.built else 0.0)


def _conda(model: ModelEnv, settings: Settings, progress: Progress) -> Interpreter:
    """--env conda: the model's conda.yaml built by micromamba, mamba or conda, when one is on PATH."""
    exe = conda.conda_executable(settings.env.process_environ.get("PATH"))
    if exe is None:
        raise EnvironmentError_(
            "--env conda needs micromamba, mamba or conda on PATH, and none is there; "
            "use --env uv (conda.yaml's Python and pip section, conda packages mapped to PyPI)"
        )
    if model.conda_file is None:
        raise EnvironmentError_(f"--env conda: the model has no conda.yaml ({model.model_dir})")
    if settings.env.offline:
        raise EnvironmentError_(
            "--env conda cannot build offline; pack the environment and use --env tarball"
        )
    conda_file = model.conda_file
    key = cache.cache_key("conda", _sha256(conda_file, settings.cache_dir / "tarball-digests"), exe)

    def build(tmp: Path) -> None:
        log.info("building the model's environment with %s from %s", Path(exe).name, conda_file)
        run_tool(
            conda.conda_create_args(exe, conda_file, tmp),
            Path(exe).name,
            dict(settings.env.process_environ),
            progress,
        )
        if not model.requirements or not {r.name for r in model.requirements} & {"mlflow", "mlflow-skinny"}:
            pip = [str(tmp / "bin" / "python"), "-m", "pip", "install", *model.added]
            run_tool(pip, "pip install", dict(settings.env.process_environ), progress)

    def finish(entry: Path) -> dict[str, object]:
        versions = verify_env(
            entry / "bin" / "python", model.loader_module, dict(settings.env.process_environ), model.model_dir
        )
        return {"kind": "conda", "python": "bin/python", "tool": exe, "versions": versions}

    hit = cache.get_or_build(
        settings.cache_dir / "envs", key, build, finish, on_wait=log.info, max_bytes=settings.cache_max_bytes
    )
    _record_build("conda", hit)
    what = "built" if hit.built else "cached"
    return Interpreter(
        str(hit.path / "bin" / "python"),
        f"conda: {what} env at {hit.path} ({Path(exe).name})",
        str(hit.path),
        hit.seconds if hit.built else 0.0,
    )


def _record_build(kind: str, hit: cache.CacheHit) -> None:
    """ENV_BUILD_SECONDS for a real build: build (or unpack), relocation and check, as logged."""
    if hit.built:
        from modelport.metrics import ENV_BUILD_SECONDS  # lazily: `modelport env diff` never needs it

        ENV_BUILD_SECONDS.labels(kind).observe(hit.seconds)


def _tarball(model_dir: Path, settings: Settings, progress: Progress) -> Interpreter:
    archive = _find_archive(model_dir, settings)
    model = read_model_env(model_dir)
    root = settings.cache_dir / "envs"
    key = cache.cache_key("tar", _sha256(archive, settings.cache_dir / "tarball-digests"))
    layout: dict[str, str] = {}

    def build(tmp: Path) -> None:
        log.info("unpacking the environment tarball %s", archive)
        tarball.unpack(archive, tmp)

    def finish(entry: Path) -> dict[str, object]:
        prefix = tarball.find_prefix(entry)
        layout["kind"] = tarball.relocate(prefix, settings.env, progress)
        python = prefix / "bin" / "python"
        versions = verify_env(
            python, model.loader_module, dict(settings.env.process_environ), model.model_dir
        )
        return {
            "kind": layout["kind"],
            "python": str(python.relative_to(entry)),
            "archive": str(archive),
            "versions": versions,
        }

    hit = cache.get_or_build(root, key, build, finish, on_wait=log.info, max_bytes=settings.cache_max_bytes)
    _record_build("tarball", hit)
    python = str(hit.path / str(hit.meta.get("python", "bin/python")))
    kind = hit.meta.get("kind", "venv")
    if hit.built:
        reason = f"tarball: unpacked {archive.name} ({kind}) to {hit.path} in {hit.seconds:.1f} s"
    else:
        reason = f"tarball: cached {kind} env from {archive.name} at {hit.path}"
    return Interpreter(python, reason, str(hit.path), hit.seconds if hit.built else 0.0)


def _find_archive(model_dir: Path, settings: Settings) -> Path:
    uri = settings.env.policy_arg
    if uri is None:
        path = model_dir / "environment.tar.gz"
        if not path.is_file():
            raise EnvironmentError_(
                f"--env tarball: the model has no environment.tar.gz ({model_dir}); name one with --env tarball:URI"
            )
        return path
    if "://" not in uri and not Path(uri).is_absolute() and (model_dir / uri).exists():
        path = model_dir / uri
    else:
        from modelport.storage import resolve_model

        try:
            path = resolve_model(uri, settings.storage, settings.cache_dir)
        except StorageError as exc:
            raise EnvironmentError_(f"--env tarball: cannot fetch {uri}: {exc.message}") from exc
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith((".tar.gz", ".tgz", ".tar")))
        if len(found) != 1:
            raise EnvironmentError_(f"--env tarball: {uri} is a folder without exactly one .tar.gz in it")
        path = found[0]
    return path


def _sha256(path: Path, memo_dir: Path) -> str:
    """The file's sha256, remembered by (path, size, mtime) so a warm start does not re-read GBs."""
    st = path.stat()
    stamp = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    memo = memo_dir / stamp
    try:
        known = memo.read_text().strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    value = digest.hexdigest()
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(value)
        os.replace(tmp, memo)
    except OSError:
        pass  # an unwritable cache only costs the next start another read
    return value


def _path(model_dir: Path, settings: Settings) -> Interpreter:
    arg = settings.env.policy_arg
    if not arg:
        raise EnvironmentError_(
            "--env path:DIR needs the environment's folder, e.g. --env path:/opt/envs/model"
        )
    given = Path(arg)
    python = given if given.is_file() else given / "bin" / "python"
    if not python.exists():
        raise EnvironmentError_(f"--env {settings.env.policy}: no Python at {python}")
    installed = drift.probe_interpreter(str(python), settings.env.process_environ)
    if not {"mlflow", "mlflow-skinny"} & set(installed.packages):
        raise EnvironmentError_(f"--env {settings.env.policy}: mlflow is not installed in {python}")
    report = drift.diff(read_model_env(model_dir), installed)
    note = f"; drift: {report.summary()}" if report.blocking else ""
    return Interpreter(str(python), f"path: {python}{note}", str(given))
