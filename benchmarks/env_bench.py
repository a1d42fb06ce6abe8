"""Time to first ready, and the disk each environment takes: mlflow's env managers against modelport.

The model is an sklearn model saved by MLflow 3.17.2 (`--model new`, the default) or by MLflow
2.9.2 / scikit-learn 1.3.2 in a venv this script makes (`--model old`); every contender builds
that model's environment before it can answer (cold), then starts again on it (warm).

`--fs same,tmpfs` puts the environments (mlflow's MLFLOW_ENV_ROOT, modelport's --cache-dir) on the
repository's disk, where the shared uv cache is (.cache/uv), and on a tmpfs mounted for the run
(another filesystem: needs root). Disk is what `du` counts for the environment folder, and the
part of it that is the environment's own (files not hard-linked with uv's cache).

    .venv/bin/python benchmarks/env_bench.py                  # every scenario, same disk and tmpfs
    .venv/bin/python benchmarks/env_bench.py --fs same --only modelport-uv,mlflow-uv
    .venv/bin/python benchmarks/env_bench.py --cold-uv-cache  # uv scenarios with an empty uv cache too

Servers listen on 127.0.0.1 only; the only other traffic is package-index installs. Results go to
.bench/env/results-MODEL.json; each server's log to .bench/env/logs/.
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
        _trim_inferred(model)
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


# MLflow's requirement inference records what the *saving* interpreter had imported; in a
# development venv that has torch and pytest, an sklearn model would otherwise need them.
_NOT_THE_MODELS = ("torch", "pytest", "rich")


def _trim_inferred(model: Path) -> None:
    for name in ("requirements.txt", "conda.yaml"):
        path = model / name
        lines = path.read_text().splitlines(keepends=True)
        kept = [
            ln
            for ln in lines
            if not ln.strip().lstrip("- ").startswith(tuple(f"{n}==" for n in _NOT_THE_MODELS))
        ]
        if kept != lines:
            path.write_text("".join(kept))


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


def disk(path: Path, exclude: Path | None = None) -> dict[str, int]:
    """Bytes on disk under `path` (each inode once) and the part only this tree holds (st_nlink 1:
    not hard-linked with uv's cache or another environment). `exclude`: a folder not counted."""
    seen: set[tuple[int, int]] = set()
    total = own = 0
    for root, dirs, files in os.walk(path):
        if exclude is not None:
            dirs[:] = [d for d in dirs if Path(root, d) != exclude]
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
            if st.st_nlink == 1 or os.path.isdir(os.path.join(root, name)):
                own += st.st_blocks * 512
    return {"disk_mb": round(total / 1e6, 1), "own_mb": round(own / 1e6, 1)}


def mount_tmpfs(where: Path) -> bool:
    """A tmpfs at `where` (another filesystem than the repository's disk); False when not root."""
    where.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(where):
        return True
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8g", "modelport-bench", str(where)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"no tmpfs ({proc.stderr.decode().strip() or 'mount failed'}): skipping --fs tmpfs", flush=True)
    return proc.returncode == 0


def scenarios_for(model: Path, root: Path, fs: str, run_id: str, cold_uv: bool) -> dict[str, list]:
    """Each contender: its cold and warm runs, and the folder holding its environments."""
    env = base_env()
    out: dict[str, list] = {}
    for manager in ("virtualenv", "uv"):
        env_root = root / f"mlflow-envs-{manager}-{run_id}"
        run = lambda tag, m=manager, r=env_root: mlflow_serve(f"mlflow-{m}-{tag}-{fs}", model, m, r, env)  # noqa: E731
        out[f"mlflow-{manager}"] = [run, env_root, None]
    # modelport with the shared uv cache on the repository's disk: hard links on `same`, copies on tmpfs.
    cache = root / f"modelport-cache-{run_id}"
    out["modelport-uv"] = [
        lambda tag: modelport_serve(f"modelport-uv-{tag}-{fs}", model, "uv", cache, env),
        cache / "envs",
        None,
    ]
    # modelport's own default: uv's cache beside the environments (same filesystem wherever that is),
    # empty at first, so its cold start also downloads every wheel.
    beside = root / f"modelport-beside-{run_id}"
    env_beside = {k: v for k, v in env.items() if k != "UV_CACHE_DIR"}
    out["modelport-uv-beside"] = [
        lambda tag: modelport_serve(f"modelport-uv-beside-{tag}-{fs}", model, "uv", beside, env_beside),
        beside / "envs",
        beside / "uv",
    ]
    if cold_uv:
        empty = base_env(UV_CACHE_DIR=str(root / f"uv-cache-empty-{run_id}"))
        out["mlflow-uv-emptycache"] = [
            lambda tag: mlflow_serve(
                f"mlflow-uv-emptycache-{tag}-{fs}", model, "uv", root / f"mlflow-e-{run_id}", empty
            ),
            root / f"mlflow-e-{run_id}",
            None,
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", help="comma-separated contenders: mlflow-virtualenv, mlflow-uv, modelport-uv, ..."
    )
    parser.add_argument("--model", choices=["new", "old"], default="new")
    parser.add_argument(
        "--fs", default="same,tmpfs", help="where environments go: same (the repo's disk), tmpfs"
    )
    parser.add_argument(
        "--cold-uv-cache", action="store_true", help="also mlflow's uv manager with an empty uv cache"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model = make_model(args.model)
    run_id = uuid.uuid4().hex[:8]
    results = []
    tmpfs = WORK / "tmpfs"
    try:
        for fs in args.fs.split(","):
            if fs == "tmpfs" and not mount_tmpfs(tmpfs):
                continue
            root = WORK if fs == "same" else tmpfs
            contenders = scenarios_for(model, root, fs, run_id, args.cold_uv_cache)
            names = args.only.split(",") if args.only else list(contenders)
            for name in names:
                run, folder, exclude = contenders[name]
                cold = run("cold")
                warm = run("warm")
                size = disk(folder, exclude) if folder.exists() else {}
                row = {
                    "contender": name,
                    "fs": fs,
                    "cold_s": cold.get("seconds"),
                    "warm_s": warm.get("seconds"),
                }
                row.update(size)
                errors = [r["error"] for r in (cold, warm) if "error" in r]
                if errors:
                    row["error"] = "; ".join(str(e) for e in errors)
                results.append(row)
                print(
                    f"{fs:6s} {name:22s} cold {row['cold_s']!s:>7} s  warm {row['warm_s']!s:>6} s  "
                    f"disk {size.get('disk_mb', '-')!s:>7} MB  own {size.get('own_mb', '-')!s:>7} MB"
                    + (f"  ERROR {row['error']}" if errors else ""),
                    flush=True,
                )
                if name == "modelport-uv":
                    step = resolve_only(model, root / f"modelport-cache-{run_id}", base_env())
                    results.append({"contender": "modelport-resolve-warm", "fs": fs, **step})
                    print(f"{fs:6s} environment step of a warm start: {step['seconds']} s", flush=True)
    finally:
        if os.path.ismount(tmpfs):
            subprocess.run(["umount", str(tmpfs)], check=False)
    out = {"run": run_id, "model": args.model, "results": results}
    (WORK / f"results-{args.model}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
