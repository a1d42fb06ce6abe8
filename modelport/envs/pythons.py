"""Find a base interpreter for the Python version a model was saved with.

Looks in pyenv-style folders first (no subprocess), then asks uv, which may download one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from modelport.envs.config import EnvSettings, redact
from modelport.errors import EnvironmentError_


@dataclass(frozen=True)
class BasePython:
    path: Path
    version: str
    # One phrase for the log: "exact", "3.11.9 for 3.11.7", "3.12.1 for 3.9 (--allow-python-mismatch)".
    note: str

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def local_pythons(settings: EnvSettings) -> list[tuple[Version, Path]]:
    """Interpreters we know without running anything: pyenv-style folders and our own base."""
    found: dict[str, tuple[Version, Path]] = {}
    for root in settings.python_dirs:
        try:
            entries = sorted(root.iterdir())
        except OSError:
            continue
        for entry in entries:
            exe = entry / "bin" / "python"
            if re.fullmatch(r"\d+\.\d+\.\d+", entry.name) and exe.exists():
                found.setdefault(entry.name, (Version(entry.name), exe))
    own = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if base.exists():
        found.setdefault(own, (Version(own), base))
    return sorted(found.values())


def choose(wanted: str, available: list[tuple[Version, Path]]) -> tuple[Version, Path, str] | None:
    """Exact version, else the newest patch of the same minor; None when the minor is absent."""
    try:
        want = Version(wanted)
    except InvalidVersion as exc:
        raise EnvironmentError_(f"the model asks for Python {wanted!r}, which is not a version") from exc
    exact = [(v, p) for v, p in available if v.release[:3] == (want.release + (0, 0))[:3]]
    if exact and len(want.release) >= 3:
        return exact[0][0], exact[0][1], "exact"
    same = [(v, p) for v, p in available if v.release[:2] == want.release[:2]]
    if same:
        v, p = max(same)
        return v, p, ("exact" if len(want.release) < 3 else f"{v} for {wanted}")
    return None


def nearest(wanted: str, available: list[tuple[Version, Path]]) -> tuple[Version, Path] | None:
    """Same major, closest minor (the newer on a tie), newest patch."""
    want = Version(wanted)
    same_major = [(v, p) for v, p in available if v.major == want.major]
    if not same_major:
        return None
    return min(same_major, key=lambda vp: (abs(vp[0].minor - want.minor), -vp[0].minor, -vp[0].micro))


def find_base_python(wanted: str | None, settings: EnvSettings, uv: str) -> BasePython:
    """An interpreter for `wanted` (the model's python_env.yaml), or a clear error."""
    available = local_pythons(settings)
    if not wanted:
        own = [vp for vp in available if vp[1].parent.parent == Path(sys.base_prefix)]
        if not own and not available:
            raise EnvironmentError_("no Python interpreter found to build the model's environment with")
        v, p = max(own) if own else available[-1]
        return BasePython(p, str(v), "the server's (the model names no Python version)")
    hit = choose(wanted, available)
    if hit:
        return BasePython(hit[1], str(hit[0]), hit[2])
    found, uv_error = _uv_find(wanted, settings, uv)
    if found:
        return BasePython(found[1], str(found[0]), "provided by uv")
    have = ", ".join(str(v) for v, _ in available) or "none"
    near = nearest(wanted, available)
    if near and settings.allow_python_mismatch:
        return BasePython(near[1], str(near[0]), f"{near[0]} for {wanted} (--allow-python-mismatch)")
    downloads = settings.process_environ.get("UV_PYTHON_DOWNLOADS") or settings.python_downloads
    if uv_error:
        why = f"uv could not download one: {uv_error}"
    elif downloads in ("never", "manual"):
        # The image's setting: say what to do instead of waiting for a download that is off.
        why = (
            f"downloads are off (UV_PYTHON_DOWNLOADS={downloads}): use an image whose base has Python "
            f"{'.'.join(wanted.split('.')[:2])}, or pack the model's environment where that Python is "
            "(`modelport env build --pack`) and serve it with --env tarball"
        )
    else:
        why = "uv has none to offer"
    hint = f"; pass --allow-python-mismatch to use {near[0]}" if near else ""
    raise EnvironmentError_(
        f"the model was saved with Python {wanted}; no Python {'.'.join(wanted.split('.')[:2])} is on "
        f"this machine (found {have}) and {why}{hint}"
    )


def _uv_find(wanted: str, settings: EnvSettings, uv: str) -> tuple[tuple[Version, Path] | None, str | None]:
    """An interpreter uv knows of or downloads (unless UV_PYTHON_DOWNLOADS forbids it)."""
    env = dict(settings.process_environ)
    minor = ".".join(wanted.split(".")[:2])
    found = _uv_python_find(uv, minor, env)
    if found or env.get("UV_PYTHON_DOWNLOADS", "automatic") in ("never", "manual"):
        return found, None
    try:
        proc = subprocess.run(
            [uv, "python", "install", wanted],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if proc.returncode != 0:
        lines = redact(proc.stderr).strip().splitlines()
        return None, (lines[0] + (f" ({lines[-1].strip()})" if len(lines) > 1 else "")) if lines else "failed"
    return _uv_python_find(uv, wanted, env), None


def _uv_python_find(uv: str, request: str, env: dict[str, str]) -> tuple[Version, Path] | None:
    try:
        proc = subprocess.run(
            [uv, "python", "find", "--no-python-downloads", request],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
    if not path:
        return None
    version = _version_of(path[0], env)
    if version and version.release[:2] == Version(request).release[:2]:
        return version, Path(path[0])
    return None


def _version_of(python: str, env: dict[str, str]) -> Version | None:
    try:
        proc = subprocess.run(
            [python, "-I", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        return Version(proc.stdout.strip())
    except (OSError, subprocess.TimeoutExpired, InvalidVersion):
        return None
