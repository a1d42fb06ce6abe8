"""Time to first ready for one model: mlflow's env managers against modelport --env uv.

The model is an sklearn model saved by MLflow 3.17.2 (`--model new`, the default) or by MLflow
2.9.2 / scikit-learn 1.3.2 in a venv this script makes (`--model old`); every contender builds
that model's environment before it can answer.

    .venv/bin/python benchmarks/env_bench.py                  # all scenarios, package caches as they are
    .venv/bin/python benchmarks/env_bench.py --cold-uv-cache  # uv scenarios with an empty uv cache too
    .venv/bin/python benchmarks/env_bench.py --only modelport-uv-cold,modelport-uv-warm

Servers listen on 127.0.0.1 only; the only other traffic is package-index installs. Results go to
.bench/env/results.json; each server's log to .bench/env/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".bench" / "env"
SCRIPT = REPO / "tests" / "envs" / "model_scripts.py"
OLD_STACK = ["mlflow==2.9.2", "scikit-learn==1.3.2", "numpy<2", "pandas<2.2", "setuptools<70"]
PY311 = "/root/.pyenv/versions/3.11.7/bin/python"
TIMEOUT_S = 900.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # mlflow's uv manager runs `uv` from PATH and pyenv must be there for its virtualenv manager;
    # the server venv's bin/ must not be, or mlflow's env would fall back to its uvicorn.
    tools = WORK / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    if not (tools / "uv").exists():
        (tools / "uv").symlink_to(uv())
    env["PATH"] = f"{tools}:{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    env.setdefault("UV_CACHE_DIR", str(REPO / ".cache" / "uv"))
    env.update(extra)
    return env


def uv() -> str:
    import uv as uv_pkg

    return uv_pkg.find_uv_bin()


def make_model(which: str) -> Path:
    """Save the benchmark model (once; reused across runs)."""
    if which == "new":
        model = WORK / "model317"
        if not (model / "MLmodel").exists():
            subprocess.run(
                [sys.executable, "-I", str(SCRIPT), "save", str(model)], check=True, env=base_env()
            )
        return model
    model = WORK / "model29"
    if (model / "MLmodel").exists():
        return model
    venv = WORK / "saving-venv"
    shutil.rmtree(venv, ignore_errors=True)
    env = base_env()
    # --seed: pip in the saving env makes MLflow pin pip/setuptools/wheel, as on a real laptop.
    subprocess.run([uv(), "venv", "-q", "--seed", "--python", PY311, str(venv)], check=True, env=env)
    subprocess.run(
        [uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *OLD_STACK],
        check=True,
        env=env,
    )
    subprocess.run([str(venv / "bin" / "python"), "-I", str(SCRIPT), "save", str(model)], check=True, env=env)
    return model


def time_to_ready(name: str, cmd: list[str], url: str, env: dict[str, str]) -> dict[str, object]:
    """Start `cmd`, poll `url` until it answers 200; the server is stopped afterwards."""
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed below
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        while time.monotonic() - start < TIMEOUT_S:
            if proc.poll() is not None:
                return {"name": name, "error": f"exited with {proc.returncode} before ready (see {log.name})"}
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return {"name": name, "seconds": round(time.monotonic() - start, 2)}
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.05)
        return {"name": name, "error": f"not ready in {TIMEOUT_S:.0f} s"}
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def mlflow_serve(
    name: str, model: Path, manager: str, env_root: Path, env: dict[str, str]
) -> dict[str, object]:
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model),
        "--env-manager",
        manager,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    return time_to_ready(
        name, cmd, f"http://127.0.0.1:{port}/ping", {**env, "MLFLOW_ENV_ROOT": str(env_root)}
    )


def modelport_serve(
    name: str, model: Path, policy: str, cache: Path, env: dict[str, str]
) -> dict[str, object]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "modelport",
        "serve",
        str(model),
        "--env",
        policy,
        "--http-port",
        str(port),
        "--grpc-port",
        str(free_port()),
        "--host",
        "127.0.0.1",
        "--cache-dir",
        str(cache),
    ]
    return time_to_ready(name, cmd, f"http://127.0.0.1:{port}/v2/health/ready", env)


def resolve_only(model: Path, cache: Path, env: dict[str, str]) -> dict[str, object]:
    """What the environment step alone adds to a warm start (in a fresh process, like the server)."""
    code = (
        "import sys, time, os; from pathlib import Path; t = time.monotonic();"
        "from modelport.settings import build_settings; from modelport.envs import resolve_interpreter;"
        "s = build_settings({'cache_dir': sys.argv[2], 'env': 'uv'}, dict(os.environ));"
        "t1 = time.monotonic(); r = resolve_interpreter(Path(sys.argv[1]), s);"
        "print(round(time.monotonic() - t1, 3), round(t1 - t, 3))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(model), str(cache)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    return {"name": "modelport-resolve-warm", "seconds": float(out[0]), "import_s": float(out[1])}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--model", choices=["new", "old"], default="new")
    parser.add_argument(
        "--cold-uv-cache", action="store_true", help="also run the uv scenarios with an empty uv cache"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = make_model(args.model)
    run_id = uuid.uuid4().hex[:8]
    env = base_env()
    mp_cache = WORK / f"modelport-cache-{run_id}"
    scenarios = {
        "mlflow-virtualenv-cold": lambda: mlflow_serve(
            "mlflow-virtualenv-cold", model, "virtualenv", WORK / f"mlflow-envs-venv-{run_id}", env
        ),
        "mlflow-uv-cold": lambda: mlflow_serve(
            "mlflow-uv-cold", model, "uv", WORK / f"mlflow-envs-uv-{run_id}", env
        ),
        "mlflow-uv-warm": lambda: mlflow_serve(
            "mlflow-uv-warm", model, "uv", WORK / f"mlflow-envs-uv-{run_id}", env
        ),
        "modelport-uv-cold": lambda: modelport_serve("modelport-uv-cold", model, "uv", mp_cache, env),
        "modelport-uv-warm": lambda: modelport_serve("modelport-uv-warm", model, "uv", mp_cache, env),
        "modelport-resolve-warm": lambda: resolve_only(model, mp_cache, env),
        "modelport-path-baseline": lambda: modelport_serve(
            "modelport-path-baseline", model, f"path:{_env_prefix(mp_cache)}", WORK / "unused-cache", env
        ),
    }
    if args.cold_uv_cache:
        empty = lambda tag: base_env(UV_CACHE_DIR=str(WORK / f"uv-cache-{tag}-{run_id}"))  # noqa: E731
        scenarios["mlflow-uv-cold-emptycache"] = lambda: mlflow_serve(
            "mlflow-uv-cold-emptycache", model, "uv", WORK / f"mlflow-envs-uv2-{run_id}", empty("mlflow")
        )
        scenarios["modelport-uv-cold-emptycache"] = lambda: modelport_serve(
            "modelport-uv-cold-emptycache",
            model,
            "uv",
            WORK / f"modelport-cache2-{run_id}",
            empty("modelport"),
        )
    names = args.only.split(",") if args.only else list(scenarios)
    results = []
    for name in names:
        result = scenarios[name]()
        results.append(result)
        print(f"{name:32s} {result.get('seconds', result.get('error'))}", flush=True)
    out = {"run": run_id, "model": args.model, "results": results}
    (WORK / f"results-{args.model}.json").write_text(json.dumps(out, indent=1))


def _env_prefix(cache: Path) -> str:
    envs = [p for p in (cache / "envs").glob("uv-*") if p.is_dir()]
    return str(envs[0]) if envs else str(cache / "missing")


if __name__ == "__main__":
    main()
