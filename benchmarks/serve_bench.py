"""Serve the bundled iris model with modelport, `mlflow models serve` and MLServer, load each with wrk.

Prints one table (req/s, p50, p99, errors, cold start, RSS, ratios vs MLServer) and writes it as markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import PROTOCOLS, LoadResult, find_wrk, run_wrk, write_lua, wrk_threads  # noqa: E402
from peers import (  # noqa: E402
    GRANIAN_PACKAGES,
    MLSERVER_PACKAGES,
    PEERS,
    Peer,
    Venv,
    build_venv,
    installed_versions,
    reference_prediction,
)
from processes import ServerFailedError, free_ports, http_request, install_cleanup  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "examples" / "iris"
BASELINE = "mlserver"
VERSIONS = (
    "modelport",
    "mlserver",
    "mlserver-mlflow",
    "mlflow",
    "scikit-learn",
    "numpy",
    "pandas",
    "uvicorn",
    "granian",
    "uvloop",
    "fastapi",
)


@dataclass
class Row:
    server: str
    protocol: str
    connections: int
    result: LoadResult | None = None
    cold_s: float | None = None
    rss_mb: float | None = None
    pss_mb: float | None = None
    note: str = ""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--servers",
        default="modelport,mlflow,mlserver",
        help="comma list (default: modelport,mlflow,mlserver; add modelport-granian for modelport's app "
        "behind granian, benchmarks/granian_front.py)",
    )
    p.add_argument("--protocols", default="v2,mlflow", help="comma list of v2,mlflow (default: both)")
    p.add_argument("--connections", default="1,32", help="comma list of wrk connection counts")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load before each run")
    p.add_argument("--starts", type=int, default=3, help="launches per server; cold start is their median")
    p.add_argument(
        "--wrk-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="most wrk threads (default: one per core; never more than connections)",
    )
    p.add_argument("--out", type=Path, default=REPO / ".bench" / "serve_results.md")
    p.add_argument("--work", type=Path, default=REPO / ".bench", help="virtualenvs, logs, MLServer repo")
    p.add_argument("--python", default=sys.executable, help="base interpreter of the virtualenvs (3.10-3.12)")
    p.add_argument(
        "--modelport-python",
        help="use this interpreter for modelport (and modelport-granian) instead of building a venv",
    )
    p.add_argument("--modelport-args", default="", help="extra flags for `modelport serve` (both fronts)")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--rebuild", action="store_true", help="recreate the virtualenvs")
    args = p.parse_args(argv)
    args.servers = _names(args.servers, PEERS, "--servers")
    args.protocols = _names(args.protocols, PROTOCOLS, "--protocols")
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    args.starts = max(1, args.starts)
    return args


def _names(text: str, known: Mapping[str, object], flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"serve_bench: {flag}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def build_venvs(args: argparse.Namespace) -> dict[str, Venv]:
    requirements = ["-r", str(MODEL / "requirements.txt")]
    venvs: dict[str, Venv] = {}
    for name in args.servers:
        path = args.work / f"venv-{name}"
        if name in ("modelport", "modelport-granian"):
            if args.modelport_python:
                venvs[name] = Venv(Path(args.modelport_python).absolute().parent.parent)
                continue
            # Editable, so the checkout's current code is what runs; the stamp follows pyproject's deps.
            # granian gets a venv of its own: it is no dependency of modelport's.
            pyproject = (REPO / "pyproject.toml").read_text()
            front = list(GRANIAN_PACKAGES) if name == "modelport-granian" else []
            venvs[name] = build_venv(
                path, args.python, ["-e", str(REPO), *requirements, *front], pyproject, args.rebuild
            )
        elif name == "mlflow":
            venvs[name] = build_venv(path, args.python, requirements, rebuild=args.rebuild)
        else:
            venvs[name] = build_venv(
                path, args.python, [*MLSERVER_PACKAGES, *requirements], rebuild=args.rebuild
            )
    return venvs


def measure(
    peer: Peer, venv: Venv, args: argparse.Namespace, expected: list[object]
) -> tuple[list[Row], str]:
    """The rows of one server, and where its memory sat after the last run."""
    protocols = [p for p in args.protocols if p in peer.protocols]
    rows = [Row(peer.name, p, c) for p in protocols for c in args.connections]
    own = peer.name.startswith("modelport")
    if own:
        # Its own sources are compiled here, as the venvs' packages were at install time.
        subprocess.run([str(venv.python), "-m", "compileall", "-q", str(REPO / "modelport")], check=False)
    extra = args.modelport_args.split() if own else []
    colds: list[float] = []
    server = None
    breakdown = ""
    (args.work / "logs" / f"{peer.name}.log").unlink(missing_ok=True)
    try:
        for i in range(args.starts):
            server = peer.process(venv, MODEL, free_ports(1)[0], args.work, extra)
            server.start()
            colds.append(server.wait_ready(args.ready_timeout))
            print(f"  {peer.name}: ready in {colds[-1]:.2f} s", flush=True)
            if i < args.starts - 1:
                server.stop()
        cold = statistics.median(colds)
        assert server is not None
        wrk = find_wrk()
        for row in rows:
            row.cold_s = cold
            protocol = PROTOCOLS[row.protocol]
            status, body = http_request(server.port, "POST", protocol.path, protocol.body.encode())
            if status != 200:
                row.note = f"check failed: HTTP {status}: {body[:160].decode(errors='replace')}"
                continue
            try:
                got = protocol.predictions(body)
            except (ValueError, KeyError, IndexError, TypeError):
                row.note = f"check failed: unreadable response {body[:160].decode(errors='replace')}"
                continue
            if got != expected:
                row.note = f"wrong prediction {got}, mlflow says {expected}"
            url = f"http://127.0.0.1:{server.port}{protocol.path}"
            lua = write_lua(protocol, args.work / "lua")
            threads = wrk_threads(row.connections, args.wrk_threads)
            if args.warmup > 0:
                run_wrk(wrk, url, lua, row.connections, threads, args.warmup)
            log = args.work / "logs" / f"wrk-{peer.name}-{row.protocol}-c{row.connections}.txt"
            row.result = run_wrk(wrk, url, lua, row.connections, threads, args.duration, log)
            row.rss_mb, row.pss_mb = server.memory_mb()
            r = row.result
            print(
                f"  {peer.name} {row.protocol} c={row.connections}: {r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms, "
                f"p99 {r.p99_ms:.2f} ms, {r.errors} errors, RSS {row.rss_mb:.0f} MB",
                flush=True,
            )
        breakdown = " + ".join(f"`{cmd}` {mb:.0f}" for cmd, mb in server.memory_by_process())
    except (ServerFailedError, OSError, RuntimeError) as exc:
        print(f"  {peer.name}: {exc}", file=sys.stderr, flush=True)
        for row in rows:
            if row.result is None and not row.note:
                row.note = str(exc)
    finally:
        if server is not None:
            server.stop()
    return rows, breakdown


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "—"
    return f"{value / base:.2f}×"


def table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    head = [
        "server",
        "protocol",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cold start s",
        "RSS MB",
        "PSS MB",
        "req/s vs MLServer",
        "p99 vs MLServer",
        "cold vs MLServer",
        "RSS vs MLServer",
        "note",
    ]
    base = {(r.protocol, r.connections): r for r in rows if r.server == BASELINE and r.result}
    base_cold = next((r.cold_s for r in rows if r.server == BASELINE and r.cold_s), None)
    base_rss = max((r.rss_mb for r in rows if r.server == BASELINE and r.rss_mb), default=None)
    body = []
    for r in rows:
        b = base.get((r.protocol, r.connections))
        res = r.result
        own = r.server == BASELINE
        body.append(
            [
                r.server,
                r.protocol,
                str(r.connections),
                f"{res.rps:.0f}" if res else "—",
                f"{res.p50_ms:.2f}" if res else "—",
                f"{res.p99_ms:.2f}" if res else "—",
                str(res.errors) if res else "—",
                f"{r.cold_s:.2f}" if r.cold_s is not None else "—",
                f"{r.rss_mb:.0f}" if r.rss_mb is not None else "—",
                f"{r.pss_mb:.0f}" if r.pss_mb is not None else "—",
                "—" if own or not (res and b and b.result) else _ratio(res.rps, b.result.rps),
                "—" if own or not (res and b and b.result) else _ratio(res.p99_ms, b.result.p99_ms),
                "—" if own else _ratio(r.cold_s, base_cold),
                "—" if own else _ratio(r.rss_mb, base_rss),
                r.note,
            ]
        )
    return head, body


def targets(rows: list[Row]) -> list[str]:
    """The issue's targets, as measured for modelport (reported, never asserted)."""

    def find(server: str, protocol: str, conns: int) -> LoadResult | None:
        return next(
            (
                r.result
                for r in rows
                if (r.server, r.protocol, r.connections) == (server, protocol, conns) and r.result
            ),
            None,
        )

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = []
    high = max((r.connections for r in rows), default=32)
    mp, ms = find("modelport", "v2", high), find(BASELINE, "v2", high)
    if mp and ms:
        x = mp.rps / ms.rps if ms.rps else 0.0
        lines.append(f"V2 at {high} connections: {x:.1f}× MLServer's req/s (target ≥ 10×): {mark(x >= 10)}")
    if mp:
        lines.append(
            f"V2 at {high} connections: p99 {mp.p99_ms:.2f} ms (target ≤ 10 ms): {mark(mp.p99_ms <= 10)}"
        )
    for protocol in ("v2", "mlflow"):
        one = find("modelport", protocol, 1)
        if one:
            lines.append(
                f"{protocol} at 1 connection: p50 {one.p50_ms:.3f} ms (target ≤ 0.5 ms): "
                f"{mark(one.p50_ms <= 0.5)}"
            )
    for label, attr, pick in (("cold start", "cold_s", min), ("RSS", "rss_mb", max)):
        own = [getattr(r, attr) for r in rows if r.server == "modelport" and getattr(r, attr)]
        base = [getattr(r, attr) for r in rows if r.server == BASELINE and getattr(r, attr)]
        if own and base:
            x = pick(own) / pick(base)
            lines.append(f"{label}: {x:.2f}× MLServer's (target ≤ 0.5×): {mark(x <= 0.5)}")
    return lines


def front_comparison(rows: list[Row]) -> list[str]:
    """modelport behind granian vs behind its own front, where both ran the same protocol and load."""
    own = {(r.protocol, r.connections): r.result for r in rows if r.server == "modelport" and r.result}
    lines = []
    for r in rows:
        base = own.get((r.protocol, r.connections))
        if r.server != "modelport-granian" or r.result is None or base is None:
            continue
        g = r.result
        lines.append(
            f"{r.protocol} at {r.connections} connection(s): granian {g.rps:.0f} req/s, p50 {g.p50_ms:.2f} ms, "
            f"p99 {g.p99_ms:.2f} ms vs modelport's front {base.rps:.0f} req/s, p50 {base.p50_ms:.2f} ms, "
            f"p99 {base.p99_ms:.2f} ms: req/s {_ratio(g.rps, base.rps)}, p50 {_ratio(g.p50_ms, base.p50_ms)}, "
            f"p99 {_ratio(g.p99_ms, base.p99_ms)}"
        )
    return lines


def render_text(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(c) for c in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:{'<' if i < 2 or i == len(head) - 1 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*line).rstrip() for line in [head, *body])


def render_markdown(
    head: list[str], body: list[list[str]], goals: list[str], meta: list[str], fronts: Sequence[str] = ()
) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    out = ["# Serving benchmark: modelport vs mlflow models serve vs MLServer", "", *lines, ""]
    if goals:
        out += ["Targets (measured, not asserted):", "", *[f"- {g}" for g in goals], ""]
    if fronts:
        out += [
            "HTTP front: modelport's app behind granian vs its own front:",
            "",
            *[f"- {f}" for f in fronts],
            "",
        ]
    return "\n".join([*out, *meta, ""])


def metadata(
    args: argparse.Namespace,
    venvs: dict[str, Venv],
    argv: Sequence[str],
    rows: list[Row],
    memory: dict[str, str],
) -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    wrk = subprocess.run([find_wrk(), "-v"], capture_output=True, text=True).stdout.splitlines()
    wrk_share = max(
        (r.result.wrk_cpu_s / r.result.seconds for r in rows if r.result and r.result.seconds), default=0.0
    )
    lines = [
        f"Command: `python benchmarks/serve_bench.py {' '.join(argv)}`",
        "",
        f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Load: {wrk[0].split(' Copyright')[0] if wrk else 'wrk'}, {args.duration:g} s per run after "
        f"{args.warmup:g} s of warm-up, threads = min(connections, {args.wrk_threads}), same host and cores "
        f"as the servers (wrk took at most {wrk_share:.0%} of one core in any run); one POST body repeated, "
        "keep-alive connections, closed loop.",
        "- Cold start: launch to the first 200 on the readiness path (modelport `/v2/health/ready`, "
        f"mlflow `/ping`, MLServer `/v2/models/iris/ready`), median of {args.starts} launch(es).",
        "- RSS / PSS: summed over the server's whole process tree after each run (PSS splits shared pages).",
        "- Errors: non-2xx responses plus socket errors (connect, read, write, 2 s timeouts).",
        "- One model worker each: modelport `--workers 1`, mlflow `-w 1`, MLServer `parallel_workers: 1`.",
    ]
    if "modelport-granian" in args.servers:
        lines.append(
            "- modelport-granian: `benchmarks/granian_front.py serve` (same flags), modelport's ASGI app and "
            "workers behind granian embedded in one process (1 Rust runtime thread, the process's uvloop)."
        )
    for name, venv in venvs.items():
        versions = installed_versions(venv, VERSIONS)
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for name, text in memory.items():
        if text:
            lines.append(f"- {name} RSS by process after the load (MB): {text}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.work = args.work.absolute()
    install_cleanup()
    find_wrk()
    print("virtualenvs:", flush=True)
    venvs = build_venvs(args)
    ref_venv = next(venvs[n] for n in ("mlflow", "mlserver", "modelport") if n in venvs)
    expected = reference_prediction(ref_venv, MODEL)
    print(f"mlflow.pyfunc predicts {expected} for the benchmark row", flush=True)
    rows: list[Row] = []
    memory: dict[str, str] = {}
    for name in args.servers:
        print(f"{name}:", flush=True)
        server_rows, memory[name] = measure(PEERS[name], venvs[name], args, expected)
        rows += server_rows
    head, body = table(rows)
    goals = targets(rows)
    fronts = front_comparison(rows)
    print()
    print(render_text(head, body))
    for line in [*goals, *fronts]:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(args, venvs, argv, rows, memory)
    args.out.write_text(render_markdown(head, body, goals, meta, fronts))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
