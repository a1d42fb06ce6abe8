"""Serve the bundled iris model with modelport, `mlflow models serve` and MLServer, load each with wrk.

Prints one table (req/s, p50, p99, errors, cold start, RSS, ratios vs MLServer) and writes it as markdown.

Needs wrk on PATH (Debian/Ubuntu: `apt-get install wrk`). `--protocols ...,grpc` adds gRPC rows (modelport's
and MLServer's `inference.GRPCInferenceService/ModelInfer`, unary), loaded by h2load (`apt-get install
nghttp2-client`) replaying one prepared request on 1 HTTP/2 connection × N concurrent streams; `nghttpd`
(`apt-get install nghttp2-server`) is optional, for the generator's own ceiling printed under the table.
The gRPC client side (request, checks) runs in `.bench/venv-grpc-client` (tritonclient[grpc]), built here.

    python benchmarks/serve_bench.py --servers modelport,mlserver --protocols v2,mlflow,grpc
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import (  # noqa: E402
    GRPC,
    GRPC_PATH,
    PROTOCOLS,
    LoadResult,
    find_h2load,
    find_wrk,
    h2load_layout,
    run_h2load,
    run_wrk,
    write_lua,
    wrk_threads,
)
from peers import (  # noqa: E402
    GRANIAN_PACKAGES,
    GRPC_CLIENT_PACKAGES,
    MLSERVER_PACKAGES,
    PEERS,
    Peer,
    Venv,
    build_venv,
    installed_versions,
    reference_prediction,
    server_env,
)
from processes import ServerFailedError, ServerProcess, free_ports, http_request, install_cleanup  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "examples" / "iris"
GRPC_CLIENT = Path(__file__).resolve().parent / "grpc_client.py"
MODEL_FLOOR = Path(__file__).resolve().parent / "model_floor.py"
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
    "grpcio",
    "protobuf",
    "tritonclient",
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
    p.add_argument(
        "--protocols",
        default="v2,mlflow",
        help="comma list of v2,mlflow,grpc (default: v2,mlflow; grpc needs h2load)",
    )
    p.add_argument(
        "--connections",
        default="1,32",
        help="comma list of wrk connection counts; for grpc, of concurrent streams",
    )
    p.add_argument(
        "--grpc-connections",
        type=int,
        default=1,
        help="HTTP/2 connections the gRPC streams are spread over (default 1: one channel, as gRPC clients do)",
    )
    p.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip measuring h2load against nghttpd, a bare grpc.aio server and the model's gRPC floor",
    )
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
    args.protocols = _names(args.protocols, {**PROTOCOLS, GRPC: None}, "--protocols")
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


@dataclass(frozen=True)
class GrpcTools:
    """What the gRPC rows need: h2load, the client venv and the framed request it replays."""

    h2load: str
    client: Venv
    request: Path
    frame_bytes: int


def grpc_client(client: Venv, *argv: str, timeout: float = 120.0) -> dict[str, object]:
    """Run grpc_client.py in the client venv; its last stdout line is JSON."""
    done = subprocess.run(
        [str(client.python), str(GRPC_CLIENT), *argv],
        capture_output=True,
        text=True,
        env=server_env(client),
        cwd=client.path,
        timeout=timeout,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"grpc_client.py {argv[0]} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    out: dict[str, object] = json.loads(lines[-1])
    return out


def grpc_setup(args: argparse.Namespace) -> GrpcTools | None:
    if GRPC not in args.protocols:
        return None
    h2load = find_h2load()
    client = build_venv(
        args.work / "venv-grpc-client", args.python, list(GRPC_CLIENT_PACKAGES), rebuild=args.rebuild
    )
    request = args.work / "grpc" / "model_infer.bin"
    request.parent.mkdir(parents=True, exist_ok=True)
    sizes = grpc_client(client, "request", str(request))
    print(f"  gRPC request: {sizes['frame_bytes']} B framed ModelInfer in {request}", flush=True)
    return GrpcTools(h2load, client, request, int(str(sizes["frame_bytes"])))


def measure(
    peer: Peer, venv: Venv, args: argparse.Namespace, expected: list[object], tools: GrpcTools | None = None
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
            port, grpc_port = free_ports(2)
            server = peer.process(venv, MODEL, port, args.work, extra, grpc_port)
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
            if row.protocol == GRPC:
                assert tools is not None
                measure_grpc(row, peer, server, args, expected, tools)
            else:
                measure_http(row, peer, server, args, expected, wrk)
            if row.result is None:
                continue
            row.rss_mb, row.pss_mb = server.memory_mb()
            r = row.result
            print(
                f"  {peer.name} {row.protocol} c={row.connections}: {r.rps:.0f} req/s, p50 {r.p50_ms:.2f} ms, "
                f"p99 {r.p99_ms:.2f} ms, {r.errors} errors, RSS {row.rss_mb:.0f} MB"
                + (
                    f"; {r.generator} CPU {r.wrk_cpu_s / r.seconds:.0%} of a core, server "
                    f"{r.server_cpu_s / r.seconds:.0%}; {r.detail}"
                    if r.generator == "h2load" and r.seconds
                    else ""
                ),
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


def measure_http(
    row: Row, peer: Peer, server: ServerProcess, args: argparse.Namespace, expected: list[object], wrk: str
) -> None:
    protocol = PROTOCOLS[row.protocol]
    status, body = http_request(server.port, "POST", protocol.path, protocol.body.encode())
    if status != 200:
        row.note = f"check failed: HTTP {status}: {body[:160].decode(errors='replace')}"
        return
    try:
        got = protocol.predictions(body)
    except (ValueError, KeyError, IndexError, TypeError):
        row.note = f"check failed: unreadable response {body[:160].decode(errors='replace')}"
        return
    if got != expected:
        row.note = f"wrong prediction {got}, mlflow says {expected}"
    url = f"http://127.0.0.1:{server.port}{protocol.path}"
    lua = write_lua(protocol, args.work / "lua")
    threads = wrk_threads(row.connections, args.wrk_threads)
    if args.warmup > 0:
        run_wrk(wrk, url, lua, row.connections, threads, args.warmup)
    log = args.work / "logs" / f"wrk-{peer.name}-{row.protocol}-c{row.connections}.txt"
    row.result = run_wrk(wrk, url, lua, row.connections, threads, args.duration, log)


def _grpc_problem(check: Mapping[str, object], expected: list[object]) -> str:
    """What is wrong with one check's answers ('' when both clients got mlflow's prediction)."""
    problems = []
    for client in ("tritonclient", "replay"):
        if f"{client}_error" in check:
            problems.append(f"{client}: {check[f'{client}_error']}")
        elif check.get(client) != expected:
            problems.append(f"{client}: wrong prediction {check.get(client)}, mlflow says {expected}")
    return "; ".join(problems)


def grpc_status_counts(server: ServerProcess) -> dict[str, float]:
    """modelport's own count of gRPC answers by status (`modelport_requests_total{protocol="grpc"}`)."""
    try:
        status, body = http_request(server.port, "GET", "/metrics")
    except OSError:
        return {}
    if status != 200:
        return {}
    counts: dict[str, float] = {}
    for line in body.decode(errors="replace").splitlines():
        if not line.startswith("modelport_requests_total{") or 'protocol="grpc"' not in line:
            continue
        labels, _, value = line.rpartition("} ")
        code = next(
            (f.split("=", 1)[1].strip('"') for f in labels.split(",") if f.startswith("status=")), "?"
        )
        counts[code] = counts.get(code, 0.0) + float(value)
    return counts


def measure_grpc(
    row: Row,
    peer: Peer,
    server: ServerProcess,
    args: argparse.Namespace,
    expected: list[object],
    tools: GrpcTools,
) -> None:
    """Check with real gRPC clients, load with h2load, count errors on both sides, check again."""
    port = server.grpc_port
    if port is None:
        row.note = "no gRPC port"
        return
    check = grpc_client(tools.client, "check", str(port), str(tools.request))
    problem = _grpc_problem(check, expected)
    if "response_frame_bytes" not in check:
        row.note = f"check failed: {problem}"
        return
    row.note = problem
    response_bytes = int(str(check["response_frame_bytes"]))
    url = f"http://127.0.0.1:{port}{GRPC_PATH}"
    logs = args.work / "logs"
    name = f"h2load-{peer.name}-grpc-s{row.connections}"
    conns = args.grpc_connections
    if args.warmup > 0:
        warm = logs / f"{name}-warmup.txt"
        run_h2load(
            tools.h2load, url, tools.request, row.connections, conns, args.warmup, response_bytes, warm
        )
    counted = grpc_status_counts(server)
    cpu0 = server.cpu_seconds()
    result = run_h2load(
        tools.h2load,
        url,
        tools.request,
        row.connections,
        conns,
        args.duration,
        response_bytes,
        logs / f"{name}.txt",
    )
    row.result = dataclasses.replace(result, server_cpu_s=server.cpu_seconds() - cpu0)
    after = grpc_status_counts(server)
    notes = [row.note] if row.note else []
    if after:
        delta = {k: after.get(k, 0.0) - counted.get(k, 0.0) for k in after}
        bad = {k: v for k, v in delta.items() if v and k.upper() not in ("OK", "0", "200")}
        # h2load resets the streams still in flight when its time is up: at most one CANCELLED each.
        if 0 < bad.get("CANCELLED", 0) <= row.connections:
            del bad["CANCELLED"]
        if bad:
            notes.append("server counted " + ", ".join(f"{v:.0f} × {k}" for k, v in sorted(bad.items())))
    again = _grpc_problem(grpc_client(tools.client, "check", str(port), str(tools.request)), expected)
    if again:
        notes.append(f"after the run: {again}")
    row.note = "; ".join(notes)


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
    mp, ms = find("modelport", GRPC, high), find(BASELINE, GRPC, high)
    if mp and ms:
        x = mp.rps / ms.rps if ms.rps else 0.0
        lines.append(
            f"gRPC at {high} concurrent streams: {x:.1f}× MLServer's gRPC req/s (target ≥ 10×): {mark(x >= 10)}"
        )
    for protocol in ("v2", "mlflow", GRPC):
        one = find("modelport", protocol, 1)
        if one:
            unit = "stream" if protocol == GRPC else "connection"
            lines.append(
                f"{protocol} at 1 {unit}: p50 {one.p50_ms:.3f} ms (target ≤ 0.5 ms): {mark(one.p50_ms <= 0.5)}"
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


def generator_ceiling(args: argparse.Namespace, tools: GrpcTools, model_venv: Venv | None) -> list[str]:
    """h2load, same flags as the gRPC rows, against servers that cost next to nothing per call, and the floor.

    nghttpd (C, a static reply of a ModelInfer answer's size) shows what h2load itself can drive on this
    machine; the bare grpc.aio server (grpc_client.py bare: canned reply, no model) what grpcio under Python
    can answer at all — the roof over any grpc.aio server, modelport's included; with one socket round trip
    per call (bare-round-trip), the roof over a grpc.aio front that waits for a worker. The floor (model_floor.py
    grpc, in the model's venv) is grpc.aio calling the estimator in its own process with no checks: no
    grpcio server of this model answers one call faster.
    """
    lines: list[str] = []
    seconds = min(args.duration, 5.0)
    folder = args.work / "grpc"
    servers: list[tuple[str, str, list[str], Path, Venv]] = []  # key, label, argv, cwd, env's venv
    nghttpd = shutil.which("nghttpd")
    if nghttpd:
        docroot = folder / "docroot"
        reply = docroot / GRPC_PATH.lstrip("/")
        reply.parent.mkdir(parents=True, exist_ok=True)
        reply.write_bytes(bytes(90))
        argv = [nghttpd, "--no-tls", "-d", str(docroot)]
        servers.append(("nghttpd", "nghttpd (static 90 B reply)", argv, docroot, tools.client))
    else:
        lines.append("nghttpd not found (apt-get install nghttp2-server): h2load's own ceiling not measured")
    bare = [str(tools.client.python), str(GRPC_CLIENT), "bare"]
    label = "bare grpc.aio ModelInfer (uvloop, canned reply, no model)"
    servers.append(("bare", label, bare, tools.client.path, tools.client))
    bare = [str(tools.client.python), str(GRPC_CLIENT), "bare-round-trip"]
    label = "bare grpc.aio + one socket round trip per call (echo thread, canned reply, no model)"
    servers.append(("bare-round-trip", label, bare, tools.client.path, tools.client))
    if model_venv is not None:
        floor = [str(model_venv.python), str(MODEL_FLOOR), "grpc", str(MODEL)]
        label = "floor: grpc.aio + the model's predict in one process (uvloop, no workers, no checks)"
        servers.append(("floor", label, floor, model_venv.path, model_venv))
    for key, label, argv, cwd, venv in servers:
        port = free_ports(1)[0]
        log = args.work / "logs" / f"ceiling-{key}.log"
        log.unlink(missing_ok=True)
        server = ServerProcess(label, [*argv, str(port)], server_env(venv), cwd, port, "", log)
        server.start()
        try:
            if not wait_port(port, 20.0):
                lines.append(f"{label}: did not listen on {port}; see {log}")
                continue
            size = 90 if key == "nghttpd" else bare_reply_size(log)
            url = f"http://127.0.0.1:{port}{GRPC_PATH}"
            warm = args.work / "logs" / f"h2load-ceiling-{key}-warmup.txt"
            run_h2load(tools.h2load, url, tools.request, 1, 1, 1.0, size, warm)
            figures = []
            for streams in args.connections:
                out = args.work / "logs" / f"h2load-ceiling-{key}-s{streams}.txt"
                r = run_h2load(
                    tools.h2load, url, tools.request, streams, args.grpc_connections, seconds, size, out
                )
                figures.append(
                    f"{streams} stream(s) {r.rps:,.0f} req/s, p50 {r.p50_ms:.3f} ms, {r.errors} errors, "
                    f"h2load CPU {r.wrk_cpu_s / r.seconds:.0%} of a core"
                )
            lines.append(f"{label}: " + "; ".join(figures))
        finally:
            server.stop()
    return lines


def bare_reply_size(log: Path, timeout: float = 10.0) -> int:
    """The framed reply size the bare server prints once it listens (a JSON line in its log)."""
    deadline = time.monotonic() + timeout
    while True:
        for line in reversed(log.read_text().splitlines()):
            if line.startswith("{"):
                return int(json.loads(line)["response_frame_bytes"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"the bare gRPC server printed no reply size; see {log}")
        time.sleep(0.05)


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def render_markdown(
    head: list[str],
    body: list[list[str]],
    goals: list[str],
    meta: list[str],
    fronts: Sequence[str] = (),
    ceiling: Sequence[str] = (),
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
    if ceiling:
        out += [
            "gRPC load generator ceiling (h2load, same flags, against near-free servers) and the model's floor:",
            "",
            *[f"- {c}" for c in ceiling],
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
        (
            r.result.wrk_cpu_s / r.result.seconds
            for r in rows
            if r.result and r.result.seconds and r.result.generator == "wrk"
        ),
        default=0.0,
    )
    lines = [
        f"Command: `python benchmarks/serve_bench.py {' '.join(argv)}`",
        "",
        f"- Machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, load average {args.load_before} before the run, "
        f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} after (1/5/15 min)",
        f"- Load: {wrk[0].split(' Copyright')[0] if wrk else 'wrk'}, {args.duration:g} s per run after "
        f"{args.warmup:g} s of warm-up, threads = min(connections, {args.wrk_threads}), same host and cores "
        f"as the servers (wrk took at most {wrk_share:.0%} of one core in any run); one POST body repeated, "
        "keep-alive connections, closed loop.",
        "- Cold start: launch to the first 200 on the readiness path (modelport `/v2/health/ready`, "
        f"mlflow `/ping`, MLServer `/v2/models/iris/ready`), median of {args.starts} launch(es).",
        "- RSS / PSS: summed over the server's whole process tree after each run (PSS splits shared pages).",
        "- Errors: non-2xx responses plus socket errors (connect, read, write, 2 s timeouts).",
    ]
    grpc_rows = [r.result for r in rows if r.result and r.result.generator == "h2load" and r.result.seconds]
    if grpc_rows:
        h2load = subprocess.run([find_h2load(), "--version"], capture_output=True, text=True).stdout.strip()
        layouts = ", ".join(
            f"{n} = {c} connection(s) × {m} stream(s)"
            for n in args.connections
            for c, m in [h2load_layout(n, args.grpc_connections)]
        )
        share = max(r.wrk_cpu_s / r.seconds for r in grpc_rows)
        vs = (
            max(r.wrk_cpu_s / r.server_cpu_s for r in grpc_rows if r.server_cpu_s)
            if any(r.server_cpu_s for r in grpc_rows)
            else 0.0
        )
        lines += [
            f"- gRPC load: {h2load or 'h2load'}, unary `{GRPC_PATH}` replayed from one prepared request "
            "(four FP64 inputs of shape [1], typed `fp64_contents`), `content-type: application/grpc`, "
            f"`te: trailers`, h2c, closed loop, 1 thread; concurrency {layouts}; p50/p99 exact from h2load's "
            f"per-request log. h2load took at most {share:.0%} of one core in any run, at most "
            f"{vs:.0%} of the CPU the server took.",
            "- gRPC checks: before and after each run, one tritonclient.grpc infer (raw contents) and one "
            "grpcio replay of the exact bytes h2load sends must both give mlflow's prediction.",
            "- gRPC errors: h2load sees HTTP only (a gRPC error is a 200 whose status is in the trailers, "
            "with no message), so errors = completed requests whose answer carried no message (received DATA "
            "bytes ÷ the size of a good answer) or a non-200; modelport's own `modelport_requests_total"
            '{protocol="grpc"}` by status is checked too, and any non-OK count lands in the note (except up '
            "to one CANCELLED per stream: h2load resets the streams in flight when its time is up).",
        ]
    lines.append(
        "- One model worker each: modelport `--workers 1`, mlflow `-w 1`, MLServer `parallel_workers: 1`."
    )
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
    # Other work on the machine moves every figure; its load is printed with them.
    args.load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    install_cleanup()
    find_wrk()
    if GRPC in args.protocols:
        find_h2load()
    print("virtualenvs:", flush=True)
    venvs = build_venvs(args)
    tools = grpc_setup(args)
    ref_venv = next(venvs[n] for n in ("mlflow", "mlserver", "modelport") if n in venvs)
    expected = reference_prediction(ref_venv, MODEL)
    print(f"mlflow.pyfunc predicts {expected} for the benchmark row", flush=True)
    rows: list[Row] = []
    memory: dict[str, str] = {}
    for name in args.servers:
        print(f"{name}:", flush=True)
        server_rows, memory[name] = measure(PEERS[name], venvs[name], args, expected, tools)
        rows += server_rows
    ceiling: list[str] = []
    if tools is not None and not args.no_ceiling:
        print("gRPC load generator ceiling:", flush=True)
        ceiling = generator_ceiling(args, tools, venvs.get("modelport"))
    head, body = table(rows)
    goals = targets(rows)
    fronts = front_comparison(rows)
    print()
    print(render_text(head, body))
    for line in [*goals, *fronts, *ceiling]:
        print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    client = {"grpc-client": tools.client} if tools is not None else {}
    meta = metadata(args, {**venvs, **client}, argv, rows, memory)
    args.out.write_text(render_markdown(head, body, goals, meta, fronts, ceiling))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
