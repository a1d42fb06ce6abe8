"""The three servers under test: the virtualenv each gets and the command line that starts it.

Every virtualenv gets the model's own requirements.txt, so all three load it with identical libraries.
A fourth, small virtualenv holds the gRPC client side (grpc_client.py): tritonclient[grpc] and uvloop.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loadgen import COLUMNS, ROW
from processes import ServerProcess, free_ports

MODEL_NAME = "iris"
GRANIAN_FRONT = Path(__file__).resolve().parent / "granian_front.py"
GRANIAN_PACKAGES = ("granian==2.8.9",)
MLSERVER_PACKAGES = (
    "mlserver==1.7.1",
    "mlserver-mlflow==1.7.1",
    # uvloop 0.22 breaks MLServer 1.7.1's inference worker; 0.21 is the last release it runs with.
    "uvloop<0.22",
)
# The gRPC client side (benchmarks/grpc_client.py): request built from tritonclient's `inference` protos,
# checks through its InferenceServerClient; uvloop for its bare grpc.aio server (modelport's loop too).
# Its own venv: the harness stays standard-library only.
GRPC_CLIENT_PACKAGES = ("tritonclient[grpc]==2.73.0", "uvloop==0.23.0")


@dataclass(frozen=True)
class Venv:
    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"


def _find_uv() -> str | None:
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def build_venv(
    path: Path, python: str, args: list[str], stamp_extra: str = "", rebuild: bool = False
) -> Venv:
    """Create the virtualenv and install `args` (pip install arguments) unless its stamp says it is done."""
    venv = Venv(path)
    stamp = hashlib.sha256(json.dumps([python, args, stamp_extra]).encode()).hexdigest()
    stamp_file = path / ".bench-stamp"
    if not rebuild and stamp_file.exists() and stamp_file.read_text() == stamp and venv.python.exists():
        return venv
    print(f"  building {path} ...", flush=True)
    shutil.rmtree(path, ignore_errors=True)
    uv = _find_uv()
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", python, str(path)], check=True)
        # Bytecode compiled now, so no server's cold start pays for writing .pyc files.
        subprocess.run(
            [uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(venv.python), *args],
            check=True,
        )
    else:
        subprocess.run([python, "-m", "venv", str(path)], check=True)
        subprocess.run([str(venv.python), "-m", "pip", "install", "-q", *args], check=True)
    stamp_file.write_text(stamp)
    return venv


def installed_versions(venv: Venv, dists: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    # Run from the venv folder: from the checkout, `-c` would see its modelport.egg-info in every venv.
    done = subprocess.run(
        [str(venv.python), "-c", code, *dists], capture_output=True, text=True, cwd=venv.path, check=False
    )
    return json.loads(done.stdout) if done.returncode == 0 else {}


def server_env(venv: Venv) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELPORT_", "MLSERVER_", "MLFLOW_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    # mlflow serve starts uvicorn by name, so its venv's bin must come first on PATH.
    env["PATH"] = f"{venv.bin}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv.path)
    # MLflow 3 reports usage over the network unless told not to; benchmark traffic stays on loopback.
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    return env


@dataclass(frozen=True)
class Peer:
    """How to start one server; `protocols` are the ones it is driven with."""

    name: str
    protocols: tuple[str, ...]

    def process(
        self, venv: Venv, model: Path, port: int, work: Path, extra: list[str], grpc_port: int | None = None
    ) -> ServerProcess:
        """`grpc_port`: where it serves gRPC; a free one when None (never modelport's default 8081)."""
        log = work / "logs" / f"{self.name}.log"
        env = server_env(venv)
        if grpc_port is None:
            grpc_port = free_ports(1, exclude={port})[0]
        if self.name in ("modelport", "modelport-granian"):
            # The same app, settings and workers; only the HTTP front differs (benchmarks/granian_front.py).
            launcher = ["-m", "modelport"] if self.name == "modelport" else [str(GRANIAN_FRONT)]
            argv = [
                str(venv.python),
                *launcher,
                "serve",
                str(model),
                "--name",
                MODEL_NAME,
                "--host",
                "127.0.0.1",
                "--http-port",
                str(port),
                "--workers",
                "1",
                "--grpc-port",
                str(grpc_port),
                *extra,
            ]
            return ServerProcess(self.name, argv, env, work, port, "/v2/health/ready", log, grpc_port)
        if self.name == "mlflow":
            argv = [
                str(venv.bin / "mlflow"),
                "models",
                "serve",
                "-m",
                str(model),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
                *extra,
            ]
            return ServerProcess(self.name, argv, env, work, port, "/ping", log)
        if self.name == "mlserver":
            repo = _mlserver_repo(work / "mlserver-repo", model, port, grpc_port)
            argv = [str(venv.bin / "mlserver"), "start", str(repo), *extra]
            # The model's own ready endpoint: MLServer answers HTTP before the model has loaded.
            ready = f"/v2/models/{MODEL_NAME}/ready"
            return ServerProcess(self.name, argv, env, repo, port, ready, log, grpc_port)
        raise ValueError(self.name)


PEERS = {
    "modelport": Peer("modelport", ("v2", "mlflow", "grpc")),
    # modelport behind granian instead of its own front, to compare the two (not run by default).
    "modelport-granian": Peer("modelport-granian", ("v2", "mlflow")),
    "mlflow": Peer("mlflow", ("mlflow",)),
    # mlserver-mlflow also mounts MLflow's /invocations on MLServer, so it is measured there too.
    # Its gRPC port serves the same `inference.GRPCInferenceService` (dataplane.proto).
    "mlserver": Peer("mlserver", ("v2", "mlflow", "grpc")),
}


def _mlserver_repo(repo: Path, model: Path, port: int, grpc_port: int) -> Path:
    metrics_port = free_ports(1, exclude={port, grpc_port})[0]
    shutil.rmtree(repo, ignore_errors=True)
    (repo / MODEL_NAME).mkdir(parents=True)
    # Only ports, host and the worker count are set; every other setting keeps MLServer 1.7.1's default
    # (parallel_workers already defaults to 1, debug=True, gzip on, metrics on, no adaptive batching).
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 1,
    }
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model)},
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    (repo / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return repo


def reference_prediction(venv: Venv, model: Path) -> list[object]:
    """What mlflow.pyfunc.load_model(model).predict(row) returns: the answer every server must give."""
    code = (
        "import json, sys, pandas as pd, mlflow.pyfunc\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "p = m.predict(pd.DataFrame([json.loads(sys.argv[3])], columns=json.loads(sys.argv[2])))\n"
        "print(json.dumps(getattr(p, 'tolist', lambda: p)()))\n"
    )
    done = subprocess.run(
        [str(venv.python), "-c", code, str(model), json.dumps(COLUMNS), json.dumps(ROW)],
        capture_output=True,
        text=True,
        env=server_env(venv),
        cwd=venv.path,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mlflow could not load {model}: {done.stderr.strip()[-500:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))
