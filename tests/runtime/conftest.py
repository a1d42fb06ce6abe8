"""Fixtures for the worker-runtime tests: MLflow 1.x environments, a model saved by 1.x, servers.

The saving environments are real uv venvs (uv's cache in the repo's ignored .cache/uv); the
reference is MLflow 1.x's own scoring server, run by that MLflow on a loopback port.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, start_server
from tests.runtime.mlflow1_support import STACK, make_venv, save_model

# MLflow 1.x's own server, as `mlflow models serve` runs it minus gunicorn.
REFERENCE = r"""
import sys
from mlflow.pyfunc import scoring_server
scoring_server._serve(sys.argv[1], int(sys.argv[2]), "127.0.0.1")
"""


@pytest.fixture(scope="session")
def mlflow1_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("mlflow1") / "venv")


@pytest.fixture(scope="session")
def skinny1_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MLflow 1.x as mlflow-skinny only (no `mlflow` distribution, no Flask)."""
    packages = [p.replace("mlflow==", "mlflow-skinny==") for p in STACK]
    return make_venv(tmp_path_factory.mktemp("skinny1") / "venv", packages)


@pytest.fixture(scope="session")
def model_1x(mlflow1_python: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    dest = tmp_path_factory.mktemp("models1") / "iris1x"
    return dest, save_model(mlflow1_python, dest)


@pytest.fixture(scope="session")
def reference_1x(
    mlflow1_python: Path, model_1x: tuple[Path, list[int]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of MLflow 1.x's own scoring server for model_1x."""
    port = free_port()
    log = tmp_path_factory.mktemp("reference") / "mlflow1.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(mlflow1_python), "-c", REFERENCE, str(model_1x[0]), str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def served_1x(
    mlflow1_python: Path, model_1x: tuple[Path, list[int]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """modelport serving model_1x with workers under MLflow 1.x."""
    server = start_server(
        model_1x[0],
        "--name",
        "iris",
        "--env",
        f"path:{mlflow1_python.parent.parent}",
        tmp=tmp_path_factory.mktemp("served1x"),
    )
    try:
        yield server
    finally:
        server.stop()
