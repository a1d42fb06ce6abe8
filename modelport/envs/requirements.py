"""What a saved model asks of its environment: Python version, pinned requirements, uv project files.

Reads python_env.yaml, requirements.txt and conda.yaml as MLflow writes them; never imports mlflow.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from modelport.errors import EnvironmentError_, ModelportError
from modelport.mlmodel.spec import read_model_spec

MLFLOW_NAMES = {"mlflow", "mlflow-skinny"}
_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s+|=)(.+)$")


@dataclass(frozen=True)
class ModelEnv:
    """A model's environment as it was saved, ready to diff or to install."""

    model_dir: Path
    python_version: str | None
    mlflow_version: str | None
    loader_module: str | None
    flavor: str
    # Parsed PEP 508 requirements (after following -r includes), for the diff.
    requirements: tuple[Requirement, ...]
    # Lines that are not PEP 508 requirements (paths, URLs, options): installed, never diffed.
    unparsed: tuple[str, ...]
    # uv pip install arguments for the requirements, in order (-r FILE, pins, what we add).
    install_args: tuple[str, ...]
    # What modelport adds because the model's files lack it (mlflow at its version, numpy).
    added: tuple[str, ...]
    # python_env.yaml's build_dependencies (pip, setuptools, wheel), as installed.
    build_requirements: tuple[str, ...]
    # uv.lock and pyproject.toml, when the model carries a uv project.
    uv_project: tuple[Path, Path] | None
    # Hash of every input that decides the environment's contents.
    digest: str = field(default="")

    def describe(self) -> str:
        names = [str(r) for r in self.requirements[:4]]
        more = f" and {len(self.requirements) - 4} more" if len(self.requirements) > 4 else ""
        return ", ".join(names) + more if names else "(no requirements)"


def read_model_env(model_dir: Path) -> ModelEnv:
    """Collect everything the environment builders and the diff need from a model folder."""
    model_dir = Path(model_dir)
    spec = _read_spec(model_dir)
    flavor = spec["flavor"]
    hasher = hashlib.sha256()
    python_version: str | None = None
    install_args: list[str] = []
    lines: list[str] = []
    build_reqs: list[str] = []

    env_files: dict[str, str] = spec["env_files"]
    venv_file = model_dir / env_files.get("virtualenv", "python_env.yaml")
    req_file = model_dir / env_files.get("requirements", "requirements.txt")
    conda_file = model_dir / env_files.get("conda", "conda.yaml")
    if venv_file.is_file():
        data = _yaml(venv_file)
        python_version = _opt_str(data.get("python"))
        for dep in data.get("dependencies") or []:
            _add_line(str(dep), model_dir, install_args, lines, hasher)
        # pip/setuptools/wheel as saved: installed (mlflow 2.x imports pkg_resources) but not
        # diffed, since a server without them runs a model just as well. Installed in a step of
        # their own, before the requirements, as MLflow does: a saving env is often inconsistent
        # there (wheel 0.48 needs packaging>=24, MLflow 2.9 pins packaging 23.2).
        for dep in data.get("build_dependencies") or []:
            _add_line(_fix_build_dep(str(dep), spec["mlflow_version"]), model_dir, build_reqs, [], hasher)
    elif req_file.is_file():
        _add_line(f"-r {req_file.name}", model_dir, install_args, lines, hasher)
    elif conda_file.is_file():
        python_version, pip_deps = _conda_deps(conda_file)
        for dep in pip_deps:
            _add_line(dep, model_dir, install_args, lines, hasher)
    python_version = python_version or spec["python_version"]

    requirements, unparsed = _parse(lines)
    names = {canonicalize_name(r.name) for r in requirements}
    added: list[str] = []
    if not names & MLFLOW_NAMES:
        added.append(f"mlflow=={spec['mlflow_version']}" if spec["mlflow_version"] else "mlflow")
    if "numpy" not in names:
        # The worker runtime imports numpy before mlflow; mlflow-skinny does not pull it in.
        added.append("numpy")
    install_args.extend(added)
    hasher.update(("\0".join(added)).encode())

    uv_project = None
    lock, pyproject = model_dir / "uv.lock", model_dir / "pyproject.toml"
    if lock.is_file() and pyproject.is_file():
        uv_project = (lock, pyproject)
        hasher.update(lock.read_bytes())
        hasher.update(pyproject.read_bytes())
    return ModelEnv(
        model_dir=model_dir,
        python_version=python_version,
        mlflow_version=spec["mlflow_version"],
        loader_module=spec["loader_module"],
        flavor=flavor,
        requirements=tuple(requirements),
        unparsed=tuple(unparsed),
        install_args=tuple(install_args),
        added=tuple(added),
        build_requirements=tuple(build_reqs),
        uv_project=uv_project,
        digest=hasher.hexdigest(),
    )


def _fix_build_dep(dep: str, mlflow_version: str | None) -> str:
    # MLflow 2.x imports pkg_resources, which setuptools 82 dropped; a model saved without a
    # setuptools pin would otherwise get an environment in which mlflow cannot even import.
    if dep.strip() == "setuptools" and mlflow_version and mlflow_version.split(".")[0] in {"1", "2"}:
        return "setuptools<82"
    return dep


def _read_spec(model_dir: Path) -> dict[str, Any]:
    try:
        spec = read_model_spec(model_dir)
    except ModelportError as exc:
        raise EnvironmentError_(f"cannot read the model's environment: {exc.message}") from exc
    return {
        "flavor": spec.primary_flavor,
        "env_files": dict(spec.env_files),
        "python_version": spec.python_version,
        "mlflow_version": spec.mlflow_version,
        "loader_module": spec.loader_module,
    }


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise EnvironmentError_(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EnvironmentError_(f"{path} should be a YAML mapping, found {type(data).__name__}")
    return data


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _conda_deps(path: Path) -> tuple[str | None, list[str]]:
    python = None
    pip: list[str] = []
    for dep in _yaml(path).get("dependencies") or []:
        if isinstance(dep, dict):
            pip.extend(str(d) for d in dep.get("pip") or [])
        elif isinstance(dep, str) and re.match(r"^python\s*[=<>]", dep):
            python = re.sub(r"^python\s*=*\s*", "", dep).split("=")[0] or None
    return python, pip


def _add_line(line: str, base: Path, args: list[str], lines: list[str], hasher: Any) -> None:
    """Add one dependency line from python_env.yaml: a requirement or an include of a file."""
    line = line.strip()
    match = _INCLUDE.match(line)
    if match:
        path = (base / match.group(2).strip()).resolve()
        args.extend([match.group(1), str(path)])
        if match.group(1) in ("-r", "--requirement"):
            lines.extend(_read_requirements_file(path, hasher, depth=0))
        else:
            hasher.update(_read_bytes(path))
        return
    args.append(line)
    lines.append(line)
    hasher.update(line.encode() + b"\n")


def _read_requirements_file(path: Path, hasher: Any, depth: int) -> list[str]:
    if depth > 10:
        raise EnvironmentError_(f"requirements include each other too deeply at {path}")
    data = _read_bytes(path)
    hasher.update(data)
    out: list[str] = []
    for raw in data.decode("utf-8", errors="replace").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        match = _INCLUDE.match(line)
        if match and match.group(1) in ("-r", "--requirement"):
            out.extend(_read_requirements_file(path.parent / match.group(2).strip(), hasher, depth + 1))
        elif match:
            hasher.update(_read_bytes(path.parent / match.group(2).strip()))
        else:
            out.append(line)
            _hash_local_file(line, path.parent, hasher)
    return out


def _hash_local_file(line: str, base: Path, hasher: Any) -> None:
    # A wheel shipped with the model (mlflow's add_libraries_to_model) changes the env's contents.
    token = shlex.split(line, comments=False)[0] if line else ""
    token = token.removeprefix("file://")
    if token.endswith((".whl", ".tar.gz", ".zip")) and (base / token).is_file():
        hasher.update(_read_bytes(base / token))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EnvironmentError_(f"the model's environment names {path}, which cannot be read: {exc}") from exc


def _parse(lines: list[str]) -> tuple[list[Requirement], list[str]]:
    reqs: list[Requirement] = []
    unparsed: list[str] = []
    for line in lines:
        if line.startswith("-"):
            unparsed.append(line)
            continue
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement:
            unparsed.append(line)
    return reqs, unparsed
