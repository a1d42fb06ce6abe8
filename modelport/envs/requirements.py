"""What a saved model asks of its environment: Python version, pinned requirements, uv project files.

Reads python_env.yaml, requirements.txt and conda.yaml as MLflow writes them (the files through
pip's own parser, modelport.envs.reqfiles); never imports mlflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelport.envs.conda import read_conda
from modelport.envs.inferred import created_at, infer_requirements
from modelport.envs.reqfiles import ParsedRequirements, parse_file, parse_lines
from modelport.errors import EnvironmentError_, ModelportError
from modelport.mlmodel.spec import read_model_spec

MLFLOW_NAMES = {"mlflow", "mlflow-skinny"}


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
    # Local paths and URLs without a name: installed, never diffed.
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
    # Index options the requirement files carry (--index-url, --extra-index-url, --find-links).
    index_args: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    # conda.yaml packages with no PyPI counterpart ("mkl (not a Python package on PyPI)").
    unmapped: tuple[str, ...] = ()
    # The file the requirements were read from: python_env.yaml, requirements.txt or conda.yaml.
    source: str = ""
    conda_file: Path | None = None
    # Requirements inferred from MLmodel for a model that carries no environment files.
    inferred: tuple[str, ...] = ()
    # When the model was saved (MLmodel's utc_time_created, RFC 3339): the resolution date.
    created: str | None = None

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
    parsed = ParsedRequirements()
    build_reqs: list[str] = []
    unmapped: list[str] = []
    source = "MLmodel"
    inferred: list[str] = []
    conda_path: Path | None = None

    env_files: dict[str, str] = spec["env_files"]
    venv_file = model_dir / env_files.get("virtualenv", "python_env.yaml")
    req_file = model_dir / env_files.get("requirements", "requirements.txt")
    conda_file = model_dir / env_files.get("conda", "conda.yaml")
    if conda_file.is_file():
        conda_path = conda_file
    if venv_file.is_file():
        source = venv_file.name
        data = _yaml(venv_file)
        python_version = _opt_str(data.get("python"))
        deps = [str(d) for d in data.get("dependencies") or []]
        parse_lines(deps, model_dir, f"{venv_file.name} dependencies", parsed, hasher)
        # pip/setuptools/wheel as saved: installed (mlflow 2.x imports pkg_resources) but not
        # diffed, since a server without them runs a model just as well. Installed in a step of
        # their own, before the requirements, as MLflow does: a saving env is often inconsistent
        # there (wheel 0.48 needs packaging>=24, MLflow 2.9 pins packaging 23.2).
        build = ParsedRequirements()
        fixed = [
            _fix_build_dep(str(dep), spec["mlflow_version"]) for dep in data.get("build_dependencies") or []
        ]
        parse_lines(fixed, model_dir, f"{venv_file.name} build_dependencies", build, hasher)
        build_reqs = build.install_args
    elif req_file.is_file():
        source = req_file.name
        parse_file(req_file, parsed, hasher)
        parsed.install_args += ["-r", str(req_file.resolve())]
    elif conda_file.is_file():
        # MLflow < 1.26 wrote only conda.yaml: its Python, its pip section, conda packages mapped.
        source = conda_file.name
        conda = read_conda(_yaml(conda_file))
        python_version = conda.python
        unmapped = conda.unmapped
        parse_lines(conda.mapped, model_dir, f"{conda_file.name} dependencies", parsed, hasher)
        parse_lines(conda.pip, model_dir, f"{conda_file.name} pip section", parsed, hasher)
        # conda environments come with pip and setuptools; a uv venv has neither, and MLflow 1.x
        # and 2.x import pkg_resources (gone from setuptools 82).
        build_reqs = ["pip", _fix_build_dep("setuptools", spec["mlflow_version"])]
        hasher.update("\0".join(build_reqs).encode())
    else:
        inferred = infer_requirements(spec["spec"])
        parse_lines(inferred, model_dir, "MLmodel (inferred)", parsed, hasher)
        if spec["mlflow_version"] and spec["mlflow_version"].split(".")[0] in {"1", "2"}:
            build_reqs = ["pip", _fix_build_dep("setuptools", spec["mlflow_version"])]
            hasher.update("\0".join(build_reqs).encode())
    python_version = python_version or spec["python_version"]

    requirements = [_pin_mlflow(r, spec["mlflow_version"]) for r in parsed.requirements]
    names = {canonicalize_name(r.name) for r in requirements}
    added: list[str] = []
    pinned = [str(r) for r, old in zip(requirements, parsed.requirements, strict=True) if r is not old]
    if pinned:
        # An unpinned "mlflow" (MLflow 1.x wrote it so) means the MLflow that saved the model.
        added.extend(pinned)
    if not names & MLFLOW_NAMES:
        added.append(f"mlflow=={spec['mlflow_version']}" if spec["mlflow_version"] else "mlflow")
    if "numpy" not in names:
        # The worker runtime imports numpy before mlflow; mlflow-skinny does not pull it in.
        added.append("numpy")
    install_args = [*parsed.install_args, *added]
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
        unparsed=tuple(parsed.unnamed),
        install_args=tuple(install_args),
        added=tuple(added),
        build_requirements=tuple(build_reqs),
        uv_project=uv_project,
        digest=hasher.hexdigest(),
        index_args=tuple(parsed.index_args()),
        find_links=tuple(parsed.find_links),
        unmapped=tuple(unmapped),
        source=source,
        conda_file=conda_path,
        inferred=tuple(inferred),
        created=created_at(spec["spec"]),
    )


def _pin_mlflow(req: Requirement, version: str | None) -> Requirement:
    if canonicalize_name(req.name) in MLFLOW_NAMES and not req.specifier and not req.url and version:
        return Requirement(
            f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}=={version}"
        )
    return req


def _fix_build_dep(dep: str, mlflow_version: str | None) -> str:
    # MLflow 1.x and 2.x import pkg_resources, which setuptools 82 dropped. A model saved without
    # a setuptools pin, or with one of 82 or later (a saving venv whose setuptools was upgraded
    # after mlflow was imported, e.g. by torch's setuptools>=77), would otherwise get an
    # environment in which mlflow cannot even import.
    if not mlflow_version or mlflow_version.split(".")[0] not in {"1", "2"}:
        return dep
    try:
        req = Requirement(dep)
        clauses = [(c, Version(c.version.removesuffix(".*"))) for c in req.specifier]
    except (InvalidRequirement, InvalidVersion):
        return dep
    if canonicalize_name(req.name) != "setuptools" or req.url or req.marker:
        return dep
    if any(c.operator in ("==", "<", "<=") and v < _NO_PKG_RESOURCES for c, v in clauses):
        return dep  # bounded below 82 already
    # Clauses asking for 82 or later contradict the cap: dropped.
    kept = [str(c) for c, v in clauses if c.operator not in _FROM or v < _NO_PKG_RESOURCES]
    return "setuptools" + ",".join([*kept, "<82"])


_NO_PKG_RESOURCES = Version("82")
_FROM = frozenset({"==", "===", "~=", ">", ">="})


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
        "spec": spec,
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
