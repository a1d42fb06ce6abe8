"""Fixtures for the doctor tests: broken copies of the shared real models, the env tests' models saved
by other MLflow versions (re-exported from tests/envs/conftest.py) and the S3 emulator (tests/storage).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

for folder in (TESTS / "envs", TESTS / "storage"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def _load(name: str, path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The env tests' session fixtures (uv venvs with MLflow 2.9.2, models saved there), reused as they are.
_envs = _load("doctor_envs_fixtures", TESTS / "envs" / "conftest.py")
saving_venv_29 = _envs.saving_venv_29
model_29 = _envs.model_29
model_317 = _envs.model_317
env_cache = _envs.env_cache
_storage = _load("doctor_storage_fixtures", TESTS / "storage" / "conftest.py")
moto = _storage.moto


@pytest.fixture
def copy_model(tmp_path: Path) -> Callable[[Path], Path]:
    def copy(src: Path) -> Path:
        dest = tmp_path / "copies" / src.name
        shutil.copytree(src, dest)
        return dest

    return copy


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
