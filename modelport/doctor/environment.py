"""[environment] The model's requirements against the target interpreter (the `env diff` table), whether
an isolated environment resolves (uv, resolution only unless --build), and a bundled environment.tar.gz.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from modelport.doctor.context import Context
from modelport.doctor.fetch import human_bytes
from modelport.doctor.report import FAIL, OK, WARN, CheckResult
from modelport.envs import drift
from modelport.envs.build import exclude_newer, index_args, uv_binary
from modelport.envs.requirements import ModelEnv
from modelport.errors import ModelportError

TARBALL = "environment.tar.gz"
RESOLVE_TIMEOUT = 300.0


def check_environment(ctx: Context) -> CheckResult:
    assert ctx.model_dir is not None
    model = ctx.model_environment()
    installed = ctx.target_installed()
    report = drift.diff(model, installed)
    explicit = ctx.options.target_python is not None
    blocking = report.blocking
    ctx.drifted = [r.text() for r in sorted(report.drifted, key=lambda r: (not r.blocking, not r.matters))]
    ctx.needs_isolated_env = bool(blocking) and not explicit
    details: dict[str, Any] = {
        "target_python": installed.python,
        "python_version": installed.python_version,
        "model_python": model.python_version,
        "requirements_from": model.source,
        "drift": [
            {
                "name": r.name,
                "wanted": r.wanted,
                "installed": r.installed,
                "difference": r.kind,
                "matters": r.matters,
                "blocking": r.blocking,
            }
            for r in report.rows
        ],
    }
    status, parts, fixes = OK, [], []
    where = f"{installed.python} (Python {installed.python_version})"
    if model.inferred:
        details["inferred"] = list(model.inferred)
        status = WARN
        parts.append(
            "the model carries no environment files (requirements.txt, python_env.yaml, conda.yaml): "
            f"its environment is inferred from MLmodel: {', '.join(model.inferred)}"
        )
        fixes.append("copy the environment files MLflow saved with the model, or save it again with them")
    if blocking:
        summary = report.summary(limit=4)
        if explicit:
            status = FAIL
            parts.append(f"drift that matters against {where}: {summary}")
            fixes.append(
                "install the model's pinned versions in the target, or serve with --env auto/uv "
                "(an environment built from the model's requirements)"
            )
        else:
            status = WARN
            parts.append(
                f"drift that matters against {where}: {summary}; `serve --env auto` builds an isolated "
                "environment from the model's requirements instead"
            )
            fixes.append("build it ahead of time (`modelport env build`) or align the image with the model")
    else:
        n = len(report.drifted)
        parts.append(
            f"{where} satisfies the model's requirements"
            + (f" ({n} difference{'s' if n != 1 else ''} that do not matter)" if n else ", no drift")
        )

    if ctx.options.build:
        built = _build(ctx)
        details["build"] = built
        if built.get("error"):
            status = FAIL
            parts.append(f"building the isolated environment failed: {built['error']}")
            fixes.append("pin versions that exist for the model's Python, or pass --find-links")
        else:
            parts.append(f"isolated environment built: {built['python']} ({human_bytes(built['bytes'])})")
    else:
        waited = time.perf_counter()
        started = ctx.futures.get("resolution")
        resolved = dict(started.result() if started is not None else resolve(model, ctx))
        # Time this check spent on resolution (it runs beside the other checks): not "fast" work.
        resolved["wait_seconds"] = round(time.perf_counter() - waited, 3)
        details["resolution"] = resolved
        if resolved.get("error"):
            bad = FAIL if ctx.needs_isolated_env or explicit and blocking else WARN
            status = FAIL if bad == FAIL else (WARN if status == OK else status)
            parts.append(f"the model's requirements do not resolve: {resolved['error']}")
            fixes.append(
                "fix the pins in requirements.txt / python_env.yaml or point UV_INDEX_URL at an index that has them"
            )
        else:
            parts.append(
                f"an isolated environment resolves ({resolved['packages']} packages for Python {resolved['python']})"
            )

    archive = ctx.model_dir / TARBALL
    if archive.is_file():
        packed = inspect_tarball(archive, model)
        details["tarball"] = packed
        if packed.get("error"):
            status = FAIL
            parts.append(f"{TARBALL} is unusable: {packed['error']}")
            fixes.append("re-pack it with `modelport env build --pack` (or conda-pack / venv-pack)")
        else:
            parts.append(
                f"{TARBALL}: {packed['kind']} environment, Python {packed['python'] or '?'}, "
                f"mlflow {packed['mlflow'] or 'missing'}"
            )
            if not packed["mlflow"]:
                status = FAIL
                fixes.append(f"install mlflow into the packed environment ({TARBALL} has none)")
            elif packed.get("warning"):
                status = WARN if status == OK else status
                parts.append(packed["warning"])
    return CheckResult("environment", status, "; ".join(parts), "; ".join(fixes), details)


def _requirement_lines(model: ModelEnv) -> tuple[list[str], list[str]]:
    """uv pip install arguments as lines of a requirements file, and the flags that are not lines."""
    lines: list[str] = []
    flags: list[str] = []
    args = list(model.install_args)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-r", "-c", "-e") and i + 1 < len(args):
            lines.append(f"{arg} {args[i + 1]}")
            i += 2
            continue
        (flags if arg.startswith("--") else lines).append(arg)
        i += 1
    return lines, flags


def resolve(model: ModelEnv, ctx: Context) -> dict[str, Any]:
    """`uv pip compile` of the model's requirements for its Python: resolution only, nothing installed."""
    from modelport.envs.resolve import with_tools

    settings = with_tools(ctx.settings)
    python = model.python_version or ctx.target_installed().python_version
    lines, flags = _requirement_lines(model)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelport-doctor-") as tmp:
        req = Path(tmp, "requirements.in")
        req.write_text("\n".join(lines) + "\n")
        cmd = [
            uv_binary(),
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--python-version",
            python,
            *(["--offline"] if settings.env.offline else []),
            *(["--exclude-newer", as_of] if (as_of := exclude_newer(model, settings.env)) else []),
            *index_args(settings.env),
            *model.index_args,
            *flags,
            str(req),
        ]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=RESOLVE_TIMEOUT,
                env=dict(settings.env.process_environ),
                cwd=str(model.model_dir),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"python": python, "error": f"uv pip compile did not run: {exc}"}
    seconds = round(time.perf_counter() - started, 3)
    if proc.returncode != 0:
        lines_out = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return {
            "python": python,
            "seconds": seconds,
            "error": " ".join(" ".join(lines_out[-6:]).split())[:800],
        }
    pins = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return {"python": python, "seconds": seconds, "packages": len(pins), "pins": pins}


def _build(ctx: Context) -> dict[str, Any]:
    from modelport.envs.resolve import build_env

    assert ctx.model_dir is not None
    try:
        interp = build_env(ctx.model_dir, ctx.settings)
    except ModelportError as exc:
        return {"error": exc.message}
    size = tree_bytes(Path(interp.prefix)) if interp.prefix else 0
    ctx.env_bytes = size
    return {"python": interp.python, "reason": interp.reason, "bytes": size}


def tree_bytes(root: Path) -> int:
    total = 0
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = Path(current, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def inspect_tarball(archive: Path, model: ModelEnv) -> dict[str, Any]:
    """Unpack the bundled environment to a temporary folder with the safe extractor and look inside."""
    from modelport.envs import tarball

    with tempfile.TemporaryDirectory(prefix="modelport-doctor-env-") as tmp:
        dest = Path(tmp, "env")
        try:
            tarball.unpack(archive, dest)
            prefix = tarball.find_prefix(dest)
        except ModelportError as exc:
            return {"error": exc.message}
        kind = "conda" if (prefix / "conda-meta").is_dir() else "venv"
        python = _packed_python(prefix, kind)
        mlflow = _packed_version(prefix, "mlflow") or _packed_version(prefix, "mlflow_skinny")
        out: dict[str, Any] = {"kind": kind, "python": python, "mlflow": mlflow, "bytes": tree_bytes(prefix)}
    wanted = model.python_version
    if python and wanted and python.split(".")[:2] != wanted.split(".")[:2]:
        out["warning"] = f"the model was saved with Python {wanted}, the packed environment has {python}"
    elif mlflow and model.mlflow_version and mlflow != model.mlflow_version:
        out["warning"] = (
            f"the model was saved with mlflow {model.mlflow_version}, the packed environment has {mlflow}"
        )
    return out


def _packed_python(prefix: Path, kind: str) -> str | None:
    if kind == "venv":
        for line in (prefix / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version_info", "version"):
                return value.strip()
        return None
    metas = sorted((prefix / "conda-meta").glob("python-[0-9]*.json"))
    return metas[0].name[len("python-") :].split("-")[0] if metas else None


def _packed_version(prefix: Path, dist: str) -> str | None:
    for site in list(prefix.glob("lib/python*/site-packages")) + list(prefix.glob("Lib/site-packages")):
        for info in site.glob(f"{dist}-*.dist-info"):
            return info.name[len(dist) + 1 : -len(".dist-info")]
    return None
