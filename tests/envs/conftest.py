"""Fixtures for the environment tests: models saved by real old and new MLflow, and a shared cache.

The saving environments are real uv venvs; uv's cache lives in the repo's ignored .cache/uv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from envs_support import OLD_STACK, base_python, make_settings, run_script, uv_environ

from modelport.envs import Interpreter, resolve_interpreter
from modelport.envs.build import uv_binary


@pytest.fixture(scope="session")
def saving_venv_29(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A uv venv with MLflow 2.9.2 and scikit-learn 1.3.2: the 'training' environment of an old model."""
    venv = tmp_path_factory.mktemp("saving") / "mlflow29"
    uv = uv_binary()
    env = uv_environ()
    subprocess.run([uv, "venv", "-q", "--python", str(base_python()), str(venv)], check=True, env=env)
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *OLD_STACK],
        check=True,
        env=env,
        timeout=600,
    )
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def model_29(saving_venv_29: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An sklearn model saved by MLflow 2.9.2 with an optional column, and its predictions there."""
    dest = tmp_path_factory.mktemp("models") / "m29"
    expected = run_script(saving_venv_29, "save", str(dest), "optional")
    return dest, expected


@pytest.fixture(scope="session")
def model_317(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An sklearn model saved by the server's own MLflow (3.17.2, "required" columns)."""
    dest = tmp_path_factory.mktemp("models") / "m317"
    expected = run_script(sys.executable, "save", str(dest))
    return dest, expected


@pytest.fixture(scope="session")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The modelport cache shared by the tests that may reuse each other's environments."""
    return tmp_path_factory.mktemp("modelport-cache")


@pytest.fixture(scope="session")
def env_29(model_29: tuple[Path, dict], env_cache: Path) -> Interpreter:
    """The isolated environment `auto` builds for model_29 (built once per session)."""
    return resolve_interpreter(model_29[0], make_settings(env_cache, "auto"))


@pytest.fixture
def copy_model(tmp_path: Path) -> Callable[[Path], Path]:
    def copy(src: Path) -> Path:
        dest = tmp_path / src.name
        shutil.copytree(src, dest)
        return dest

    return copy


@pytest.fixture(scope="session")
def model_1x(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """An sklearn model saved by MLflow 1.30.1 (scikit-learn 1.1.3), and its predictions there."""
    from tests.runtime.mlflow1_support import make_venv, save_model

    python = make_venv(tmp_path_factory.mktemp("saving1x") / "venv")
    dest = tmp_path_factory.mktemp("models1x") / "iris1x"
    return dest, save_model(python, dest)
