"""Start-up, worker replacement and memory: modelport (workers forked from a template, and spawned)
beside `mlflow models serve --workers N` and MLServer's `parallel_workers`, in the same run.

For 1, 2 and 4 workers of each server it reports launch to ready (median of --starts launches), RSS
and PSS (from /proc/PID/smaps_rollup) per process and in total, after a few predictions; and, with
one worker, SIGKILL of the worker to a prediction answered again. Below the table, the floor: launch to
loaded of a python that does nothing but import mlflow.pyfunc and load the model (model_floor.py load), which
no server can beat. Uses the virtualenvs serve_bench.py builds under .bench/ (the model's own requirements;
modelport editable from this checkout).

    python benchmarks/startup_bench.py --servers modelport,mlflow,mlserver --workers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import COLUMNS, ROW  # noqa: E402
from peers import PEERS, Venv, server_env  # noqa: E402
from processes import (  # noqa: E402
    ServerProcess,
    _children_map,
    _memory_kb,
    free_ports,
    http_request,
    install_cleanup,
    process_tree,
)
from serve_bench import MODEL, MODEL_FLOOR, REPO, build_venvs  # noqa: E402

V2_BODY = json.dumps(
    {"inputs": [{"name": c, "datatype": "FP64", "shape": [1], "data": [v]} for c, v in zip(COLUMNS, ROW)]}
).encode()
SCORING_BODY = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}).encode()


@dataclass
class Config:
    server: str  # modelport, mlflow, mlserver
    mode: str  # fork / spawn for modelport, "" for the others
    workers: int

    @property
    def label(self) -> str:
        return f"{self.server} ({self.mode})" if self.mode else self.server


@dataclass
class Result:
    config: Config
    ready_s: list[float] = field(default_factory=list)
    processes: list[tuple[str, float, float]] = field(default_factory=list)  # role, RSS MB, PSS MB
    replace_s: float | None = None
    note: str = ""

    @property
    def rss(self) -> float:
        return sum(r for _, r, _ in self.processes)

    @property
    def pss(self) -> float:
        return sum(p for _, _, p in self.processes)


def predict(server: ServerProcess) -> bool:
    path, body = (
        ("/invocations", SCORING_BODY) if server.name == "mlflow" else ("/v2/models/iris/infer", V2_BODY)
    )
    try:
        status, _ = http_request(server.port, "POST", path, body, timeout=2.0)
    except OSError:
        return False
    return status == 200


def role_of(pid: int, root: int, children: dict[int, list[int]]) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    if pid == root:
        return "front"
    if b"modelport_worker" in cmdline:
        return "template" if children.get(pid) else "worker"
    if b"resource_tracker" in cmdline:
        return "resource tracker"
    if b"multiprocessing" in cmdline or b"uvicorn" in cmdline or b"gunicorn" in cmdline:
        return "worker"
    return "other"


def worker_pids(server: ServerProcess) -> list[int]:
    assert server.proc is not None
    root = server.proc.pid
    children = _children_map()
    return [p for p in process_tree(root) if p != root and role_of(p, root, children) == "worker"]


def memory(server: ServerProcess) -> list[tuple[str, float, float]]:
    assert server.proc is not None
    root = server.proc.pid
    children = _children_map()
    out = []
    for pid in process_tree(root):
        rss, pss = _memory_kb(pid)
        out.append((role_of(pid, root, children), rss * 1024 / 1e6, pss * 1024 / 1e6))
    return out


def start(config: Config, venv: Venv, work: Path) -> ServerProcess:
    port = free_ports(1)[0]
    peer = PEERS[config.server]
    if config.server == "modelport":
        extra = ["--workers", str(config.workers), "--worker-start", config.mode, "--grpc-port", "0"]
        extra += ["--cache-dir", str(work / "startup-cache")]
    elif config.server == "mlflow":
        extra = ["-w", str(config.workers)]
    else:
        extra = []
    server = peer.process(venv, MODEL, port, work, extra)
    if config.server == "mlserver":
        settings_path = server.cwd / "settings.json"
        settings = json.loads(settings_path.read_text())
        settings["parallel_workers"] = config.workers
        settings_path.write_text(json.dumps(settings, indent=2))
    server.start()
    return server


def replace_seconds(server: ServerProcess, timeout: float) -> tuple[float | None, str]:
    """SIGKILL the only worker; seconds until a prediction is answered again."""
    pids = worker_pids(server)
    if len(pids) != 1:
        return None, f"{len(pids)} worker processes found, not 1"
    os.kill(pids[0], signal.SIGKILL)
    killed = time.perf_counter()
    while time.perf_counter() - killed < timeout:
        if server.proc is not None and server.proc.poll() is not None:
            return None, "the server exited when its worker was killed"
        if predict(server):
            return time.perf_counter() - killed, ""
        time.sleep(0.005)
    return None, f"not serving again within {timeout:.0f} s"


def measure(config: Config, venv: Venv, args: argparse.Namespace) -> Result:
    result = Result(config)
    for launch in range(args.starts):
        server = start(config, venv, args.work)
        try:
            result.ready_s.append(server.wait_ready(args.ready_timeout))
            if launch < args.starts - 1:
                continue
            for _ in range(20 * config.workers):
                if not predict(server):
                    result.note = "a prediction failed"
            time.sleep(1.0)  # let the processes settle (lazy imports, trace queues)
            result.processes = memory(server)
            if config.workers == 1:
                result.replace_s, note = replace_seconds(server, args.replace_timeout)
                result.note = result.note or note
        finally:
            server.stop()
    return result


def floor_seconds(venv: Venv, starts: int) -> list[float]:
    """Launch to loaded of a python that only imports mlflow.pyfunc and loads the model (model_floor.py
    load): no server gets ready sooner, whatever it overlaps with these imports."""
    out = []
    for _ in range(starts):
        started = time.time()  # the wall clock: the child says when it was done on the same clock
        done = subprocess.run(
            [str(venv.python), str(MODEL_FLOOR), "load", str(MODEL)],
            env=server_env(venv),
            check=True,
            capture_output=True,
            text=True,
        )
        out.append(json.loads(done.stdout.strip().splitlines()[-1])["loaded_at"] - started)
    return out


def table(results: list[Result]) -> list[str]:
    base = {(r.config.server, r.config.mode): r.pss for r in results if r.config.workers == 1}
    lines = [
        "| server | workers | launch to ready s | RSS MB | PSS MB | PSS vs 1 worker | PSS per process (role: MB) | SIGKILL to serving s | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        one = base.get((r.config.server, r.config.mode))
        ratio = f"{r.pss / one:.2f}×" if one else ""
        per = ", ".join(f"{role} {pss:.0f}" for role, _, pss in r.processes)
        ready = f"{statistics.median(r.ready_s):.2f}" if r.ready_s else "failed"
        replace = f"{r.replace_s:.3f}" if r.replace_s is not None else ""
        lines.append(
            f"| {r.config.label} | {r.config.workers} | {ready} | {r.rss:.0f} | {r.pss:.0f} | {ratio} | {per} | {replace} | {r.note} |"
        )
    return lines


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="modelport,mlflow,mlserver")
    p.add_argument("--modes", default="fork,spawn", help="modelport's --worker-start values to run")
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--starts", type=int, default=3, help="launches per configuration; the median is shown")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--replace-timeout", type=float, default=60.0, help="SIGKILL to serving again, at most")
    p.add_argument("--work", type=Path, default=REPO / ".bench")
    p.add_argument("--out", type=Path, default=REPO / ".bench" / "startup_results.md")
    p.add_argument("--python", default=sys.executable, help="base interpreter of the virtualenvs")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--no-floor", action="store_true", help="skip timing the model's bare import and load")
    args = p.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.modelport_python = ""
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    install_cleanup()
    venvs = build_venvs(args)
    load_before = os.getloadavg()
    results = []
    for server in args.servers:
        modes = args.modes.split(",") if server == "modelport" else [""]
        for mode in modes:
            for workers in (int(w) for w in args.workers.split(",")):
                config = Config(server, mode, workers)
                print(f"{config.label}, {workers} worker(s)...", file=sys.stderr, flush=True)
                results.append(measure(config, venvs[server], args))
    floor = []
    if "modelport" in venvs and not args.no_floor:
        print("floor: the model's bare import and load...", file=sys.stderr, flush=True)
        floor = floor_seconds(venvs["modelport"], args.starts)
    lines = [
        f"startup_bench {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"load average {load_before[0]:.2f} before and {os.getloadavg()[0]:.2f} after",
        "",
        *table(results),
    ]
    if floor:
        lines += [
            "",
            f"Floor: a python that only imports mlflow.pyfunc and loads the model, garbage collector off "
            f"(`model_floor.py load`), launch to loaded: median {statistics.median(floor):.2f} s of "
            f"{len(floor)} ({', '.join(f'{s:.2f}' for s in floor)}).",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
