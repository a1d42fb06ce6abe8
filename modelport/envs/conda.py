"""conda.yaml as MLflow 1.x wrote it: its Python, its pip section, and its conda packages mapped to PyPI.

A conda package maps to the PyPI project of the same name unless a short table renames it
(pytorch -> torch) or knows it is not a Python package on PyPI (mkl, cudatoolkit, lib*). The
ones that cannot be mapped are named, never guessed. `--env conda` builds with a real conda.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from modelport.errors import EnvironmentError_

# conda-forge / defaults names whose PyPI project is called otherwise.
RENAMES = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "py-xgboost-gpu": "xgboost",
    "py-lightgbm": "lightgbm",
    "py-catboost": "catboost",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "msgpack-python": "msgpack",
    "tensorflow-base": "tensorflow",
    "tensorflow-cpu": "tensorflow",
    "dask-core": "dask",
    "py-opencv": "opencv-python",
    "python-graphviz": "graphviz",
    "ruamel_yaml": "ruamel.yaml",
    "pyyaml": "pyyaml",
    "arrow-cpp": "pyarrow",
    "prophet": "prophet",
    "fbprophet": "fbprophet",
    "sentencepiece": "sentencepiece",
    "tokenizers": "tokenizers",
}
# Packages conda ships that are not Python packages on PyPI (libraries, toolchains, runtimes).
NOT_ON_PYPI = {
    "python",
    "pip",
    "mkl",
    "mkl-service",
    "mkl_fft",
    "mkl_random",
    "blas",
    "openblas",
    "intel-openmp",
    "llvm-openmp",
    "cudatoolkit",
    "cudnn",
    "nccl",
    "cuda",
    "cuda-toolkit",
    "openssl",
    "ca-certificates",
    "zlib",
    "xz",
    "sqlite",
    "tk",
    "readline",
    "ncurses",
    "bzip2",
    "yaml",
    "hdf5",
    "gcc",
    "gxx",
    "nodejs",
    "graphviz",
    "ffmpeg",
    "git",
    "pandoc",
    "tbb",
    "icu",
    "krb5",
    "expat",
    "freetype",
    "fontconfig",
    "jpeg",
    "tzdata",
}
_NOT_ON_PYPI_PREFIXES = ("lib", "_", "r-", "cuda-", "magma-", "ld_impl")
_SPEC = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9_.-]+)\s*(.*)$")


@dataclass
class CondaEnv:
    python: str | None = None
    # Requirement strings for the mapped conda packages, then the pip section's lines as written.
    mapped: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)
    # "mkl (not a Python package on PyPI)", ... : named in the log and in `env diff`.
    unmapped: list[str] = field(default_factory=list)


def read_conda(data: Mapping[str, object]) -> CondaEnv:
    """Split a parsed conda.yaml into its Python version, PyPI requirements and what cannot map."""
    out = CondaEnv()
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise EnvironmentError_("conda.yaml: 'dependencies' should be a list")
    for dep in deps:
        if isinstance(dep, dict):
            out.pip.extend(str(d) for d in dep.get("pip") or [])
            continue
        if not isinstance(dep, str | int | float):
            continue
        name, version = _split(str(dep))
        if name is None:
            out.unmapped.append(f"{dep} (not a conda package spec modelport can read)")
            continue
        if name == "python":
            out.python = _python_version(version)
            continue
        if name == "pip":
            continue
        mapped = map_name(name)
        if mapped is None:
            out.unmapped.append(f"{name} (not a Python package on PyPI)")
            continue
        spec = _specifier(version)
        if spec is None:
            out.unmapped.append(f"{dep} (a version spec modelport cannot translate)")
            continue
        try:
            out.mapped.append(str(Requirement(f"{mapped}{spec}")))
        except InvalidRequirement:
            out.unmapped.append(f"{dep} (a version spec modelport cannot translate)")
    return out


def map_name(conda_name: str) -> str | None:
    name = conda_name.lower()
    if name in RENAMES:
        return RENAMES[name]
    if name in NOT_ON_PYPI or name.startswith(_NOT_ON_PYPI_PREFIXES) or name.endswith("-ng"):
        return None
    return name


def _split(dep: str) -> tuple[str | None, str]:
    match = _SPEC.match(dep.strip())
    if not match or "[" in dep:
        return None, ""
    return match.group(1).lower(), match.group(2).strip()


def _python_version(version: str) -> str | None:
    version = version.lstrip("=").split("=")[0].strip().rstrip("*").rstrip(".")
    return version if re.fullmatch(r"\d+(\.\d+){0,2}", version) else None


def _specifier(version: str) -> str | None:
    """conda's version part -> a PEP 440 specifier ('' for none); None when it cannot be translated."""
    version = version.strip()
    if not version:
        return ""
    if "|" in version:
        return None
    if " " in version:  # "name 1.2.3 build_0": version, then build string
        version = version.split()[0]
        return _specifier(f"={version}" if version[0].isdigit() else version)
    if version[0].isdigit():
        version = f"={version}"
    if version.startswith("==") or version[0] in "<>!~":
        return ",".join(_one(p) for p in version.split(","))
    # "=1.2.3" or "=1.2.3=build": conda's fuzzy match, 1.2.3 or anything starting with it.
    fuzzy = version[1:].split("=")[0].rstrip("*").rstrip(".")
    if not re.fullmatch(r"[0-9][0-9A-Za-z.]*", fuzzy):
        return None
    return f"=={fuzzy}" if fuzzy.count(".") >= 2 else f"=={fuzzy}.*"


def _one(part: str) -> str:
    part = part.strip()
    if part.endswith("*") and not part.endswith(".*"):
        part = part[:-1].rstrip(".") + ".*"
    return part


def conda_executable(path_env: str | None) -> str | None:
    """The first of micromamba, mamba, conda on PATH (the server's PATH as given to builders)."""
    for name in ("micromamba", "mamba", "conda"):
        found = shutil.which(name, path=path_env)
        if found:
            return found
    return None


def conda_create_args(exe: str, conda_file: Path, dest: Path) -> list[str]:
    """The command that creates an environment at `dest` from the model's conda.yaml."""
    if Path(exe).name.startswith("micromamba"):
        return [exe, "create", "--yes", "--prefix", str(dest), "--file", str(conda_file)]
    return [exe, "env", "create", "--yes", "--prefix", str(dest), "--file", str(conda_file)]
