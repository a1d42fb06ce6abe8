"""Shared fixtures: real MLflow models built with real mlflow, and modelport run as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_IRIS = REPO / "examples" / "iris"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)
    grpc_port: int = 0  # 0: gRPC not served

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        assert self.grpc_port, "started without grpc=True"
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    model: str | Path,
    *args: str,
    tmp: Path,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
    expect_ready: bool = True,
    grpc: bool = False,
    launcher: tuple[str, ...] = ("-m", "modelport"),
) -> Server:
    """Run ``python -m modelport serve`` on a free loopback port; wait for readiness.

    gRPC is off (``--grpc-port 0``) unless ``grpc`` (a free port) or ``--grpc-port`` in ``args``.
    ``launcher``: what follows ``python`` instead of ``-m modelport`` (a ``-c`` that injects a fault).
    """
    port = free_port()
    grpc_port = free_port() if grpc else 0
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"modelport-{port}.log"
    cmd = [
        sys.executable,
        *launcher,
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(port),
        *(() if "--grpc-port" in args else ("--grpc-port", str(grpc_port))),
        *args,
    ]
    full_env = {**os.environ, "MODELPORT_CACHE_DIR": str(tmp / "cache"), **(env or {})}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    server = Server(proc, port, log_path, cmd, grpc_port)
    if not expect_ready:
        return server
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"modelport exited with {proc.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base}/v2/health/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"modelport not ready within {timeout} s:\n{server.log()}")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def iris_model() -> Path:
    """The bundled example: sklearn logistic regression, four double columns."""
    return EXAMPLE_IRIS


@pytest.fixture(scope="session")
def iris_frame():  # type: ignore[no-untyped-def]
    import pandas as pd
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True).data
    data.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return pd.DataFrame(data.to_numpy()[::10], columns=data.columns)


CUSTOM_MODEL_CODE = textwrap.dedent(
    '''
    import pandas as pd
    import mlflow.pyfunc


    class Greeter(mlflow.pyfunc.PythonModel):
        """A custom pyfunc with a string column, an optional column and params."""

        def predict(self, context, model_input, params=None):
            params = params or {}
            scale = float(params.get("scale", 1.0))
            prefix = params.get("prefix", "hello")
            bonus = model_input["bonus"] if "bonus" in model_input else 0.0
            return pd.DataFrame({
                "greeting": [f"{prefix} {n}" for n in model_input["name"]],
                "score": model_input["x"] * scale + bonus,
            })
    '''
)


@pytest.fixture(scope="session")
def custom_model(models_dir: Path) -> Path:
    """Custom pyfunc: string + double + optional double columns, params with defaults."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    code = models_dir / "greeter_code"
    code.mkdir()
    (code / "greeter_model.py").write_text(CUSTOM_MODEL_CODE)
    sys.path.insert(0, str(code))
    try:
        import greeter_model

        example = pd.DataFrame({"name": ["ada", "bob"], "x": [1.0, 2.0], "bonus": [0.5, 0.25]})
        params = {"scale": 1.0, "prefix": "hello"}
        model = greeter_model.Greeter()
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        inferred = infer_signature(example, model.predict(None, example, params), params)
        # "bonus" may be left out: optional, the way MLflow >= 2.10 writes it ("required": false).
        inputs = Schema(
            [ColSpec("string", "name"), ColSpec("double", "x"), ColSpec("double", "bonus", required=False)]
        )
        signature = ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)
        path = models_dir / "greeter"
        mlflow.pyfunc.save_model(
            path,
            python_model=model,
            signature=signature,
            input_example=example,
            code_paths=[str(code / "greeter_model.py")],
            pip_requirements=["mlflow", "pandas"],
        )
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("greeter_model", None)
    return path


@pytest.fixture(scope="session")
def torch_model(models_dir: Path) -> Path:
    """PyTorch: one float32 [-1, 4] tensor in, [-1, 2] out."""
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    net.eval()
    example = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(example)).numpy()
    path = models_dir / "torch"
    mlflow.pytorch.save_model(
        net,
        path,
        signature=infer_signature(example, out),
        input_example=example,
        pip_requirements=["mlflow", "torch==2.13.0"],
    )
    return path


@pytest.fixture(scope="module")
def iris_server(iris_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(iris_model, tmp=tmp_path_factory.mktemp("iris-server"), grpc=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def custom_server(custom_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        custom_model, "--name", "greeter", tmp=tmp_path_factory.mktemp("custom-server"), grpc=True
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def torch_server(torch_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        torch_model, "--name", "torch", tmp=tmp_path_factory.mktemp("torch-server"), grpc=True
    )
    yield server
    server.stop()
