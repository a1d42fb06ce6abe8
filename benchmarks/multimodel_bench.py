"""Several models in one server: modelport's model repository side by side with MLServer's
multi-model serving, in the same run, on the same machine and the same model.

    python benchmarks/multimodel_bench.py [--models 4] [--servers modelport,mlserver] [--work .bench]

Each server starts on a repository of N copies of the bundled iris model with nothing loaded
(modelport `--load-models-at-startup false`, MLServer `load_models_at_startup: false`), then, over
the V2 repository API both serve: the first model ("hot") is loaded; every other one is loaded in
turn while one client thread keeps asking the hot model (latency of each answer recorded); the
memory of the server's process tree is read after each load; then the others are unloaded.

Figures: RSS and PSS (MB, 10^6 bytes) of the whole process tree, load and unload wall time as the
client sees it, hot-model latency idle and during the loads. One worker per model for modelport
(`--workers 1`), MLServer's default `parallel_workers: 1`. The virtualenvs are serve_bench's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import COLUMNS, ROW  # noqa: E402
from peers import MLSERVER_PACKAGES, Venv, build_venv, installed_versions, server_env  # noqa: E402
from processes import ServerProcess, free_ports, http_request, install_cleanup  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "examples" / "iris"
BODY = json.dumps(
    {
        "inputs": [
            {"name": c, "datatype": "FP64", "shape": [1], "data": [v]}
            for c, v in zip(COLUMNS, ROW, strict=True)
        ]
    }
).encode()


@dataclass
class Result:
    server: str
    base_mb: tuple[float, float] = (0.0, 0.0)
    first_mb: tuple[float, float] = (0.0, 0.0)
    per_model_mb: list[tuple[float, float]] = field(default_factory=list)
    after_unload_mb: tuple[float, float] = (0.0, 0.0)
    load_s: list[float] = field(default_factory=list)
    unload_s: list[float] = field(default_factory=list)
    idle_ms: list[float] = field(default_factory=list)
    during_ms: list[float] = field(default_factory=list)
    errors: int = 0


class HotClient(threading.Thread):
    """Sequential V2 infers on one model; each answer's (end time, latency ms), errors counted."""

    def __init__(self, port: int, model: str) -> None:
        super().__init__(daemon=True)
        self.port, self.model = port, model
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        ends = time.monotonic() + 900  # bounded, whatever happens to the caller
        while not self.stopping.is_set() and time.monotonic() < ends:
            started = time.perf_counter()
            try:
                status, _ = http_request(self.port, "POST", f"/v2/models/{self.model}/infer", BODY, 30)
            except OSError:
                status = 0
            done = time.perf_counter()
            if status == 200:
                self.samples.append((done, (done - started) * 1000))
            else:
                self.errors += 1

    def between(self, start: float, end: float) -> list[float]:
        return [ms for t, ms in self.samples if start <= t <= end]


def repository(root: Path, server: str, names: list[str], ports: tuple[int, int]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name in names:
        shutil.copytree(MODEL, root / name)
        if server == "mlserver":
            settings = {
                "name": name,
                "implementation": "mlserver_mlflow.MLflowRuntime",
                "parameters": {"uri": str(root / name)},
            }
            (root / name / "model-settings.json").write_text(json.dumps(settings))
    if server == "mlserver":
        metrics = free_ports(1, exclude=set(ports))[0]
        settings = {
            "host": "127.0.0.1",
            "http_port": ports[0],
            "grpc_port": ports[1],
            "metrics_port": metrics,
            "parallel_workers": 1,
            "load_models_at_startup": False,
        }
        (root / "settings.json").write_text(json.dumps(settings))
    return root


def start(server: str, venv: Venv, root: Path, ports: tuple[int, int], work: Path) -> ServerProcess:
    log = work / "logs" / f"multimodel-{server}.log"
    env = server_env(venv)
    if server == "modelport":
        argv = [
            str(venv.python), "-m", "modelport", "serve", "--model-repository", str(root),
            "--load-models-at-startup", "false", "--host", "127.0.0.1", "--http-port", str(ports[0]),
            "--grpc-port", str(ports[1]), "--workers", "1", "--env", "local",
        ]  # fmt: skip
        return ServerProcess(server, argv, env, work, ports[0], "/v2/health/ready", log, ports[1])
    argv = [str(venv.bin / "mlserver"), "start", str(root)]
    return ServerProcess(server, argv, env, root, ports[0], "/v2/health/live", log, ports[1])


def call(port: int, path: str, timeout: float = 300) -> float:
    started = time.perf_counter()
    status, body = http_request(port, "POST", path, b"{}", timeout)
    if status != 200:
        raise RuntimeError(f"POST {path}: {status} {body[:300]!r}")
    return time.perf_counter() - started


def measure(server: str, venv: Venv, args: argparse.Namespace) -> Result:
    names = [f"m{i}" for i in range(args.models)]
    ports = tuple(free_ports(2))
    root = repository(args.work / f"multimodel-repo-{server}", server, names, (ports[0], ports[1]))
    proc = start(server, venv, root, (ports[0], ports[1]), args.work)
    result = Result(server)
    proc.start()
    try:
        proc.wait_ready(300)
        time.sleep(2.0)
        result.base_mb = proc.memory_mb()
        result.load_s.append(call(ports[0], f"/v2/repository/models/{names[0]}/load"))
        time.sleep(1.0)
        result.first_mb = proc.memory_mb()
        hot = HotClient(ports[0], names[0])
        hot.start()
        time.sleep(args.idle_s)
        result.idle_ms = hot.between(0, time.perf_counter())
        previous = proc.memory_mb()
        for name in names[1:]:
            begin = time.perf_counter()
            result.load_s.append(call(ports[0], f"/v2/repository/models/{name}/load"))
            result.during_ms += hot.between(begin, time.perf_counter())
            time.sleep(1.0)
            now = proc.memory_mb()
            result.per_model_mb.append((now[0] - previous[0], now[1] - previous[1]))
            previous = now
        for name in names[1:]:
            result.unload_s.append(call(ports[0], f"/v2/repository/models/{name}/unload"))
        time.sleep(2.0)
        result.after_unload_mb = proc.memory_mb()
        hot.stopping.set()
        hot.join(60)
        result.errors = hot.errors
    finally:
        proc.stop()
    return result


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(results: list[Result]) -> list[str]:
    head = (
        "| server | tree RSS / PSS, no model (MB) | + first model RSS / PSS | + each further model RSS / PSS "
        "(mean) | load s (mean, max) | unload s (mean) | RSS / PSS after unloading all but one | hot model "
        "p50 / p99 ms idle | hot p50 / p99 / max ms while others load | hot errors |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in results:
        rss = statistics.mean(d[0] for d in r.per_model_mb) if r.per_model_mb else float("nan")
        pss = statistics.mean(d[1] for d in r.per_model_mb) if r.per_model_mb else float("nan")
        lines.append(
            f"| {r.server} | {r.base_mb[0]:.0f} / {r.base_mb[1]:.0f} "
            f"| {r.first_mb[0] - r.base_mb[0]:.0f} / {r.first_mb[1] - r.base_mb[1]:.0f} "
            f"| {rss:.0f} / {pss:.0f} | {statistics.mean(r.load_s):.2f}, {max(r.load_s):.2f} "
            f"| {statistics.mean(r.unload_s) if r.unload_s else float('nan'):.2f} "
            f"| {r.after_unload_mb[0]:.0f} / {r.after_unload_mb[1]:.0f} "
            f"| {pct(r.idle_ms, 0.5):.2f} / {pct(r.idle_ms, 0.99):.2f} "
            f"| {pct(r.during_ms, 0.5):.2f} / {pct(r.during_ms, 0.99):.2f} / {max(r.during_ms, default=float('nan')):.1f} "
            f"| {r.errors} |"
        )
    return lines


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=int, default=4, help="models in the repository (default 4)")
    p.add_argument("--servers", default="modelport,mlserver")
    p.add_argument("--work", type=Path, default=REPO / ".bench")
    p.add_argument("--python", default=sys.executable, help="interpreter the virtualenvs are built from")
    p.add_argument("--idle-s", dest="idle_s", type=float, default=5.0, help="hot-model baseline seconds")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    args.work = args.work.absolute()
    install_cleanup()
    requirements = ["-r", str(MODEL / "requirements.txt")]
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    results, versions = [], []
    for server in [s.strip() for s in args.servers.split(",") if s.strip()]:
        if server == "modelport":
            pyproject = (REPO / "pyproject.toml").read_text()
            venv = build_venv(
                args.work / "venv-modelport", args.python, ["-e", str(REPO), *requirements], pyproject
            )
        elif server == "mlserver":
            venv = build_venv(args.work / "venv-mlserver", args.python, [*MLSERVER_PACKAGES, *requirements])
        else:
            raise SystemExit(f"multimodel_bench: unknown server {server!r} (modelport, mlserver)")
        print(f"{server}: {args.models} models ...", flush=True)
        results.append(measure(server, venv, args))
        found = installed_versions(
            venv, ("modelport", "mlserver", "mlserver-mlflow", "mlflow", "scikit-learn")
        )
        versions.append(f"- {server}: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    lines = [
        f"Multi-model serving, {args.models} copies of examples/iris, {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPUs, load average before {load}.",
        "",
        *table(results),
        "",
        *versions,
        f"- command: `python benchmarks/multimodel_bench.py {' '.join(sys.argv[1:])}`".replace(" `", "`", 0),
    ]
    text = "\n".join(lines)
    print(text)
    out = args.out or args.work / "multimodel_results.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
