"""Build a model's virtual environment with uv, and check that an environment can load the model.

uv's own output is streamed to a progress callback and kept, so a failure shows the resolver's words.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
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
log = logging.getLogger("modelport.envs")

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


def tool_settings(env: EnvSettings, cache_dir: Path) -> EnvSettings:
    """`env` with uv's variables decided: its cache beside ours (same filesystem, so installs are
    hard links), the link mode said explicitly, Python downloads and offline mode as configured."""
    environ = dict(env.process_environ)
    uv_cache = Path(environ.get("UV_CACHE_DIR") or cache_dir / "uv")
    environ["UV_CACHE_DIR"] = str(uv_cache)
    if not environ.get("UV_LINK_MODE"):
        environ["UV_LINK_MODE"] = link_mode(uv_cache, cache_dir / "envs")
    environ["UV_PYTHON_DOWNLOADS"] = "never" if env.offline else env.python_downloads
    if env.offline:
        environ["UV_OFFLINE"] = "1"
    return dataclasses.replace(env, process_environ=environ)


def link_mode(uv_cache: Path, envs_root: Path) -> str:
    """hardlink when uv's cache and the environments share a filesystem; copy otherwise (uv would
    fall back to copying anyway, after a failed link per file and a warning)."""
    try:
        same = _device(uv_cache) == _device(envs_root)
    except OSError:
        return "copy"
    return "hardlink" if same else "copy"


def _device(path: Path) -> int:
    # The folder may not exist yet: the filesystem it will be on is its nearest existing parent's.
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.stat().st_dev


def uv_flags(settings: EnvSettings) -> list[str]:
    """Flags every installing uv command gets: the link mode, and --offline when asked."""
    mode = settings.process_environ.get("UV_LINK_MODE")
    flags = ["--link-mode", mode] if mode else []
    return flags + (["--offline"] if settings.offline else [])


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
    try:
        if model.uv_project:
            # The lock is the exact environment; requirements.txt was exported from it.
            _uv_sync(model, uv, dest, settings, env, progress)
            steps = [list(model.build_requirements), list(model.added)]
        as_of = exclude_newer(model, settings)
        for args in steps:
            if not args:
                continue
            cmd = [
                uv,
                "pip",
                "install",
                "--python",
                python,
                *uv_flags(settings),
                *index_args(settings),
                *_model_index_args(model, settings),
                *args,
            ]
            if as_of is None:
                run_tool(cmd, "uv pip install", env, progress, cwd=model.model_dir)
                continue
            try:
                run_tool(
                    [*cmd, "--exclude-newer", as_of], "uv pip install", env, progress, cwd=model.model_dir
                )
            except EnvironmentError_ as exc:
                # Pins the saving machine could not have had (edited after saving), or no wheel
                # of that day for this Python: today's index may still do. Anything else (uv
                # killed, the index unreachable) is not the date's fault.
                if not any(sign in exc.message for sign in _DATED_FAILURES):
                    raise
                log.warning(
                    "resolving as of the model's creation (%s) failed; resolving with today's index: %s",
                    as_of,
                    exc.message.splitlines()[-1] if exc.message else "",
                )
                run_tool(cmd, "uv pip install", env, progress, cwd=model.model_dir)
    except EnvironmentError_ as exc:
        if settings.offline:
            raise EnvironmentError_(offline_message(exc.message, model, settings)) from exc
        raise


_DATED_FAILURES = ("No solution found", "Failed to build", "exclude-newer")


def exclude_newer(model: ModelEnv, settings: EnvSettings) -> str | None:
    """The date uv resolves the model's requirements as of: its creation, unless turned off
    (--resolve-as-of now), unknown, or decided by the operator's own UV_EXCLUDE_NEWER."""
    if settings.resolve_as_of != "created" or settings.process_environ.get("UV_EXCLUDE_NEWER"):
        return None
    return model.created


def _model_index_args(model: ModelEnv, settings: EnvSettings) -> list[str]:
    # The operator's index (a mirror, an air-gapped proxy) wins over one named in the model's files.
    args = list(model.index_args)
    if settings.index_url and "--index-url" in args:
        i = args.index("--index-url")
        del args[i : i + 2]
    return args


def offline_message(uv_message: str, model: ModelEnv, settings: EnvSettings) -> str:
    """Name the distributions an offline build could not find, and where it looked."""
    missing = re.findall(
        r"(?:Because |and |, )([A-Za-z0-9_.\[\]-]+) was not found in the (?:cache|provided package locations)",
        uv_message,
    )
    missing += re.findall(r"wasn't found in the cache for: `[^`]*/([A-Za-z0-9_.-]+)/?`", uv_message)
    links = [*settings.find_links, *model.find_links]
    where = (
        f"the wheelhouse ({', '.join(links)})"
        if links
        else "a wheelhouse (none given: --find-links or UV_FIND_LINKS)"
    )
    cache = settings.process_environ.get("UV_CACHE_DIR", "uv's cache")
    found = list(dict.fromkeys(missing))
    names = ", ".join(found) or "a distribution the model needs"
    verb = "are" if len(found) > 1 else "is"
    return (
        f"offline build: {names} {verb} neither in {where} nor in uv's cache ({cache}); "
        f"add it to the wheelhouse or build where the index is reachable.\n{uv_message}"
    )


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
            *uv_flags(settings),
            *index_args(settings),
        ]
        run_tool(cmd, "uv sync", sync_env, progress, cwd=Path(project))


def verify_env(
    python: Path, loader_module: str | None, environ: dict[str, str], model_dir: Path | None = None
) -> dict[str, Any]:
    """Run the environment's Python as the worker will (-I) and import mlflow and the loader."""
    loader = loader_module or "mlflow.pyfunc"
    if model_dir is not None and _ships_with_model(model_dir, loader):
        loader = "mlflow.pyfunc"  # a loader in the model's code/ folder is on sys.path only at load
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


def _ships_with_model(model_dir: Path, module: str) -> bool:
    top = module.split(".", 1)[0]
    return any(
        (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file()
        for folder in model_dir.iterdir()
        if folder.is_dir()
    )


def run_tool(
    cmd: Sequence[str], what: str, env: dict[str, str], progress: Progress, cwd: Path | None = None
) -> None:
    """Run uv (or a relocation script), streaming its output; raise with its last lines on failure."""
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        # No preexec_fn (unsafe when other threads run): a session of its own so that the whole
        # group (uv and the build backends it starts) can be killed, and a tiny exec shim so that
        # it dies with us if we are killed outright.
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd) if cwd else None,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise EnvironmentError_(f"cannot run {what}: {exc}") from exc
    code = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = redact(line.rstrip())
            tail.append(line)
            progress(line)
        code = proc.wait()
    finally:
        if code != 0:
            # Cancelled (KeyboardInterrupt, a server stopping) or failed: nothing of it may go on
            # writing into a folder the next builder removes.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    if code == 127 and tail and tail[-1].startswith("modelport: cannot run"):
        raise EnvironmentError_(f"cannot run {what}: {tail[-1].split(': ', 2)[-1]}")
    if code != 0:
        why = f"was killed by signal {-code}" if code < 0 else f"failed (exit status {code})"
        detail = "\n".join(_useful(tail))
        raise EnvironmentError_(f"{what} {why}:\n{detail}" if detail else f"{what} {why}")


def _useful(lines: collections.deque[str]) -> list[str]:
    # uv lists every installed package with a leading +/-; the error is in the other lines.
    kept = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith(("+ ", "- "))]
    return kept[-25:]


# Runs after exec (so no Python runs between fork and exec): asks Linux to SIGKILL this process
# when the thread that started it goes (PR_SET_PDEATHSIG survives exec), then becomes the tool.
_DIE_WITH_PARENT = r"""
import os, sys
if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)
    except (OSError, AttributeError):
        pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    print("modelport: cannot run: " + str(exc), flush=True)
    sys.exit(127)
"""
