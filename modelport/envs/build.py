"""Build a model's virtual environment with uv, and check that an environment can load the model.

uv's own output is streamed to a progress callback and kept, so a failure shows the resolver's words.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from modelport.envs.config import EnvSettings, redact
from modelport.envs.pythons import BasePython
from modelport.envs.requirements import ModelEnv
from modelport.errors import EnvironmentError_

Progress = Callable[[str], None]

_VERIFY = r"""
import gc; gc.disable()  # nothing to collect while importing; ~15% faster
import importlib, json, platform, sys
import numpy, mlflow
importlib.import_module(sys.argv[1])
print(json.dumps({"python": platform.python_version(), "mlflow": mlflow.__version__,
                  "numpy": numpy.__version__, "prefix": sys.prefix}))
"""


def uv_binary() -> str:
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise EnvironmentError_("uv is not installed: `pip install uv` (it builds the model environments)")


def index_args(settings: EnvSettings) -> list[str]:
    args: list[str] = []
    if settings.index_url:
        args += ["--default-index", settings.index_url]
    for url in settings.extra_index_urls:
        args += ["--extra-index-url", url]
    for link in settings.find_links:
        args += ["--find-links", link]
    return args


def build_uv_env(
    model: ModelEnv, base: BasePython, dest: Path, settings: EnvSettings, progress: Progress
) -> None:
    """Create a relocatable venv at `dest` holding the model's requirements and mlflow."""
    uv = uv_binary()
    env = dict(settings.process_environ)
    run_tool(
        [uv, "venv", "--relocatable", "--quiet", "--python", str(base.path), str(dest)],
        "uv venv",
        env,
        progress,
        cwd=model.model_dir,
    )
    python = str(dest / "bin" / "python")
    steps = [list(model.build_requirements), list(model.install_args)]
    if model.uv_project:
        # The lock is the exact environment; requirements.txt was exported from it.
        _uv_sync(model, uv, dest, settings, env, progress)
        steps = [list(model.build_requirements), list(model.added)]
    for args in steps:
        if args:
            cmd = [uv, "pip", "install", "--python", python, *index_args(settings), *args]
            run_tool(cmd, "uv pip install", env, progress, cwd=model.model_dir)


def _uv_sync(
    model: ModelEnv, uv: str, dest: Path, settings: EnvSettings, env: dict[str, str], progress: Progress
) -> None:
    assert model.uv_project is not None
    with tempfile.TemporaryDirectory(prefix="modelport-uvproject-") as project:
        for src in model.uv_project:
            shutil.copy2(src, Path(project) / src.name)
        sync_env = {**env, "UV_PROJECT_ENVIRONMENT": str(dest)}
        cmd = [
            uv,
            "sync",
            "--frozen",
            "--no-dev",
            "--no-install-project",
            "--inexact",
            "--python",
            str(dest / "bin" / "python"),
            *index_args(settings),
        ]
        run_tool(cmd, "uv sync", sync_env, progress, cwd=Path(project))


def verify_env(python: Path, loader_module: str | None, environ: dict[str, str]) -> dict[str, Any]:
    """Run the environment's Python as the worker will (-I) and import mlflow and the loader."""
    loader = loader_module or "mlflow.pyfunc"
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", _VERIFY, loader],
            capture_output=True,
            text=True,
            env=environ,
            cwd=str(python.parent),
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentError_(f"the environment's Python {python} does not run: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise EnvironmentError_(
            f"the environment at {python.parent.parent} cannot import mlflow and {loader}: {last}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_tool(
    cmd: Sequence[str], what: str, env: dict[str, str], progress: Progress, cwd: Path | None = None
) -> None:
    """Run uv (or a relocation script), streaming its output; raise with its last lines on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd) if cwd else None,
            text=True,
            errors="replace",
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise EnvironmentError_(f"cannot run {what}: {exc}") from exc
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = redact(line.rstrip())
            tail.append(line)
            progress(line)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        why = f"was killed by signal {-code}" if code < 0 else f"failed (exit status {code})"
        detail = "\n".join(_useful(tail))
        raise EnvironmentError_(f"{what} {why}:\n{detail}" if detail else f"{what} {why}")


def _useful(lines: collections.deque[str]) -> list[str]:
    # uv lists every installed package with a leading +/-; the error is in the other lines.
    kept = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(("+ ", "- "))]
    return kept[-25:]


def _die_with_parent() -> None:
    # A build whose parent was killed must not keep writing into a folder the next builder removes.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    os.setpgrp()
