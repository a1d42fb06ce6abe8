"""Hostile clients against modelport and its peers: slow request heads and an endless header.

Starts each server (the same way serve_bench.py does, in the venvs under .bench/) on 127.0.0.1 with
the bundled iris model and measures, per server:

- readiness under slow clients: N connections each send half a request head, then one more byte of a
  header value every few seconds, never finishing; meanwhile a fresh connection probes the readiness
  path every 0.5 s (modelport and MLServer /v2/health/ready, mlflow /ping). A probe that fails, or
  answers anything but 200, or takes over 5 s, counts as failed.
- memory under an endless header: one connection streams `X-A: aaaa...` in 64 KiB chunks as fast as the
  server takes them; the server's RSS (summed over its process tree) before, at the end and some seconds
  after the connection closed, its CPU seconds during the stream, and when and how it closed.

Prints a Markdown table, servers side by side, with ratios vs modelport, and writes it to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile import (  # noqa: E402
    EndlessResult,
    ProbeSummary,
    SlowResult,
    early_413,
    endless_header_attack,
    idle_keep_alive,
    probe_series,
    slow_clients_attack,
    summarize,
)
from loadgen import PROTOCOLS  # noqa: E402
from peers import PEERS, Venv, installed_versions  # noqa: E402
from processes import (  # noqa: E402
    ServerFailedError,
    ServerProcess,
    free_ports,
    install_cleanup,
    tree_cpu_seconds,
    tree_memory_mb,
)
from serve_bench import MODEL, REPO, build_venvs  # noqa: E402

SERVERS = ("modelport", "modelport-granian", "mlserver", "mlflow")
# Where each server says it is ready to serve (not the model-load path serve_bench waits on).
READY_PATH = {
    "modelport": "/v2/health/ready",
    "modelport-granian": "/v2/health/ready",
    "mlserver": "/v2/health/ready",
    "mlflow": "/ping",
}
# The real request sent beside the readiness probes (mlflow serves no V2).
INFER_PROTOCOL = {"modelport": "v2", "modelport-granian": "v2", "mlserver": "v2", "mlflow": "mlflow"}
VERSIONS = ("modelport", "mlserver", "mlflow", "uvicorn", "httptools", "h11", "uvloop", "fastapi", "granian")


@dataclass
class Outcome:
    server: str
    idle: ProbeSummary | None = None
    slow: SlowResult | None = None
    loaded: ProbeSummary | None = None
    infer: ProbeSummary | None = None
    slow_rss_mb: float | None = None
    slow_cpu_s: float | None = None
    ready_after_slow: str = ""
    endless: EndlessResult | None = None
    rss_before_mb: float | None = None
    rss_end_mb: float | None = None
    rss_after_mb: float | None = None
    endless_cpu_s: float | None = None
    ready_after_endless: str = ""
    keep_alive_closed_s: float | None = None
    keep_alive_checked_s: float = 0.0
    early_413: str = ""
    error: str = ""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only", default=",".join(SERVERS), help=f"comma list of {', '.join(SERVERS)} (default: all)"
    )
    p.add_argument("--slow-clients", type=int, default=1000, help="slow connections held open (default 1000)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each attack (default 20)")
    p.add_argument(
        "--after", type=float, default=5.0, help="seconds after the endless header for the last RSS"
    )
    p.add_argument("--probe-every", type=float, default=0.5, help="seconds between readiness probes")
    p.add_argument("--probe-timeout", type=float, default=5.0, help="a probe slower than this failed")
    p.add_argument("--trickle", type=float, default=3.0, help="seconds between a slow client's bytes")
    p.add_argument(
        "--max-stream-mb", type=float, default=4096.0, help="stop the endless header after this many MB sent"
    )
    p.add_argument("--out", type=Path, default=REPO / ".bench" / "hostile_results.md")
    p.add_argument("--work", type=Path, default=REPO / ".bench", help="virtualenvs, logs")
    p.add_argument("--python", default=sys.executable, help="base interpreter of the virtualenvs (3.10-3.12)")
    p.add_argument(
        "--modelport-python", help="use this interpreter for modelport (and modelport-granian), no venv built"
    )
    p.add_argument("--modelport-args", default="", help="extra flags for `modelport serve` (both fronts)")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--rebuild", action="store_true", help="recreate the virtualenvs")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVERS]
    if unknown or not names:
        raise SystemExit(f"hostile_probe: --only: unknown {', '.join(unknown)} (known: {', '.join(SERVERS)})")
    args.servers = names
    args.slow_clients = max(0, args.slow_clients)
    return args


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, for us and the servers we start (they inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start(name: str, venv: Venv, args: argparse.Namespace) -> ServerProcess:
    extra = args.modelport_args.split() if name.startswith("modelport") else []
    server = PEERS[name].process(venv, MODEL, free_ports(1)[0], args.work, extra)
    server.start()
    seconds = server.wait_ready(args.ready_timeout)
    print(f"  {name}: ready in {seconds:.2f} s on port {server.port}", flush=True)
    return server


async def still_ready(server: ServerProcess, path: str) -> str:
    if server.proc is None or server.proc.poll() is not None:
        return "server died"
    [one] = await probe_series(server.port, path, 1.0, 1.0, 5.0)
    return "yes" if one.ok(5.0) else f"no ({one.error or f'HTTP {one.status}'})"


async def slow_phase(server: ServerProcess, path: str, args: argparse.Namespace, out: Outcome) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    protocol = PROTOCOLS[INFER_PROTOCOL[out.server]]
    out.idle = summarize(
        await probe_series(server.port, path, 2.0, 0.25, args.probe_timeout), args.probe_timeout
    )
    cpu0 = tree_cpu_seconds(pid)

    def held() -> None:
        out.slow_cpu_s = tree_cpu_seconds(pid) - cpu0
        out.slow_rss_mb = tree_memory_mb(pid)[0]

    out.slow = await slow_clients_attack(
        server.port,
        path,
        args.slow_clients,
        args.seconds,
        args.probe_every,
        args.probe_timeout,
        args.trickle,
        (protocol.path, protocol.body.encode()),
        held,
    )
    out.loaded = summarize(out.slow.probes, args.probe_timeout)
    out.infer = summarize(out.slow.infers, args.probe_timeout)
    await asyncio.sleep(1.0)
    out.ready_after_slow = await still_ready(server, path)
    s = out.slow
    print(
        f"  {out.server}: {s.connected}/{len(s.clients)} slow clients connected in {s.open_s:.1f} s; probes "
        f"p50 {_ms(out.loaded.p50_ms)} max {_ms(out.loaded.max_ms)} ms, {out.loaded.failed}/{out.loaded.count} "
        f"failed {out.loaded.reasons}; {protocol.path} p50 {_ms(out.infer.p50_ms)} ms, {out.infer.failed}/"
        f"{out.infer.count} failed {out.infer.reasons}; server closed {s.closes()}",
        flush=True,
    )


async def endless_phase(server: ServerProcess, path: str, args: argparse.Namespace, out: Outcome) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    await asyncio.sleep(1.0)  # let the start-up settle
    out.early_413 = await early_413(server.port, PROTOCOLS[INFER_PROTOCOL[out.server]].path, 3.0)
    # An idle keep-alive connection, watched while the stream runs (and the 5 s after it).
    out.keep_alive_checked_s = args.seconds + args.after
    keep_alive = asyncio.create_task(idle_keep_alive(server.port, path, out.keep_alive_checked_s))
    await asyncio.sleep(0.2)
    out.rss_before_mb = tree_memory_mb(pid)[0]
    cpu0 = tree_cpu_seconds(pid)
    out.endless = await endless_header_attack(
        server.port, args.seconds, int(args.max_stream_mb * 1e6), lambda: tree_memory_mb(pid)[0]
    )
    out.endless_cpu_s = tree_cpu_seconds(pid) - cpu0
    out.rss_end_mb = max(tree_memory_mb(pid)[0], 0.0)
    await asyncio.sleep(args.after)
    out.rss_after_mb = tree_memory_mb(pid)[0]
    out.keep_alive_closed_s = await keep_alive
    out.ready_after_endless = await still_ready(server, path)
    e = out.endless
    print(
        f"  {out.server}: endless header {e.sent_bytes / 1e6:.1f} MB in {e.seconds:.1f} s, {e.outcome()}; RSS "
        f"{out.rss_before_mb:.0f} → {out.rss_end_mb:.0f} (peak {e.peak_rss_mb:.0f}) → {out.rss_after_mb:.0f} MB "
        f"{args.after:g} s later; CPU {out.endless_cpu_s:.1f} s; 10 GB Content-Length: {out.early_413}; idle "
        f"keep-alive {_keep_alive(out)}",
        flush=True,
    )


def _keep_alive(o: Outcome) -> str:
    if o.keep_alive_closed_s is None:
        return f"still open after {o.keep_alive_checked_s:g} s" if o.keep_alive_checked_s else "—"
    return f"closed after {o.keep_alive_closed_s:.1f} s"


def measure(name: str, venv: Venv, args: argparse.Namespace) -> Outcome:
    out = Outcome(name)
    path = READY_PATH[name]
    for phase in (
        slow_phase,
        endless_phase,
    ):  # a fresh server for each, so neither sees the other's leftovers
        server = None
        try:
            server = start(name, venv, args)
            asyncio.run(phase(server, path, args, out))
        except (ServerFailedError, OSError) as exc:
            print(f"  {name}: {exc}", file=sys.stderr, flush=True)
            out.error = f"{out.error}; {exc}" if out.error else str(exc)
        finally:
            if server is not None:
                server.stop()
    return out


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(outcomes: list[Outcome], args: argparse.Namespace) -> tuple[list[str], list[list[str]]]:
    """One row per figure, one column per server; numbers of other servers carry a ratio vs modelport."""
    n = args.slow_clients

    def growth(o: Outcome, end: float | None) -> float | None:
        return None if end is None or o.rss_before_mb is None else end - o.rss_before_mb

    # label, format ("" = text as is), getter
    rows: list[tuple[str, str, Callable[[Outcome], object]]] = [
        ("readiness probe p50, idle (ms)", ".1f", lambda o: o.idle and o.idle.p50_ms),
        (f"slow clients connected (of {n})", "d", lambda o: o.slow and o.slow.connected),
        (f"readiness probe p50 under {n} slow clients (ms)", ".1f", lambda o: o.loaded and o.loaded.p50_ms),
        ("readiness probe max (ms)", ".1f", lambda o: o.loaded and o.loaded.max_ms),
        ("readiness probes failed", "", lambda o: o.loaded and f"{o.loaded.failed}/{o.loaded.count}"),
        ("why they failed", "", lambda o: o.loaded and (o.loaded.reasons or "—")),
        ("inference p50 under the slow clients (ms)", ".1f", lambda o: o.infer and o.infer.p50_ms),
        ("inference requests failed", "", lambda o: o.infer and f"{o.infer.failed}/{o.infer.count}"),
        ("why inference failed", "", lambda o: o.infer and (o.infer.reasons or "—")),
        ("slow clients closed by the server", "", lambda o: o.slow and o.slow.closes()),
        ("server RSS with the slow clients (MB)", ".0f", lambda o: o.slow_rss_mb),
        ("server CPU during the slow clients (s)", ".2f", lambda o: o.slow_cpu_s),
        ("ready after the slow clients", "", lambda o: o.ready_after_slow or "—"),
        ("endless header: MB the server took", ".1f", lambda o: o.endless and o.endless.sent_bytes / 1e6),
        ("endless header: connection", "", lambda o: o.endless and o.endless.outcome()),
        ("RSS before (MB)", ".0f", lambda o: o.rss_before_mb),
        ("RSS peak during the stream (MB)", ".0f", lambda o: o.endless and o.endless.peak_rss_mb),
        ("RSS at the end of the stream (MB)", ".0f", lambda o: o.rss_end_mb),
        (f"RSS {args.after:g} s after the connection closed (MB)", ".0f", lambda o: o.rss_after_mb),
        ("RSS growth, end − before (MB)", ".0f", lambda o: growth(o, o.rss_end_mb)),
        (f"RSS growth left {args.after:g} s later (MB)", ".0f", lambda o: growth(o, o.rss_after_mb)),
        ("server CPU during the stream (s)", ".2f", lambda o: o.endless_cpu_s),
        ("ready after the endless header", "", lambda o: o.ready_after_endless or "—"),
        ("POST with Content-Length 10 GB, no body", "", lambda o: o.early_413 or "—"),
        ("idle keep-alive connection", "", lambda o: _keep_alive(o)),
    ]
    base = next((o for o in outcomes if o.server == "modelport"), None)
    head = ["", *[o.server for o in outcomes]]
    body = []
    for label, fmt, get in rows:
        line = [label]
        for o in outcomes:
            value = get(o)
            if value is None or value is False or value == "":
                line.append("—")
                continue
            if not fmt:
                line.append(str(value))
                continue
            cell = format(value, fmt)
            ref = get(base) if base is not None and o is not base else None
            # No ratio against a base that shows as zero (an RSS growth of 0.3 MB is noise).
            if _number(ref) and _number(value) and float(format(ref, fmt)) != 0:
                cell += f" ({value / ref:.2f}×)"  # type: ignore[operator]
            line.append(cell)
        body.append(line)
    if any(o.error for o in outcomes):
        body.append(["errors", *[o.error or "—" for o in outcomes]])
    return head, body


def render(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", *("---:" for _ in head[1:])]) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def metadata(args: argparse.Namespace, argv: Sequence[str], venvs: dict[str, Venv], nofile: int) -> list[str]:
    lines = [
        f"Command: `{' '.join(['python benchmarks/hostile_probe.py', *argv])}`",
        "",
        f"- Machine: {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M %Z')}; everything on 127.0.0.1; "
        f"RLIMIT_NOFILE soft limit {nofile} for the probe and the servers it starts.",
        f"- Slow clients: {args.slow_clients} connections (100 connecting at a time) each send "
        "`POST /v2/models/iris/infer HTTP/1.1`, `Host`, `Content-Type` and `X-Slow: ` without the line end, "
        f"then one byte of that value every {args.trickle:g} s. Readiness probe: a fresh connection, "
        f"`GET <ready path>` with `Connection: close`, timed to the status line, every {args.probe_every:g} s "
        f"for {args.seconds:g} s; failed = error, non-200 or over {args.probe_timeout:g} s. "
        "Idle p50: 8 probes before the slow clients connect. Beside the probes, one real request a second on "
        "a fresh connection (V2 infer; mlflow: `/invocations`), judged the same way.",
        f"- Endless header: one connection sends the same request line and `X-A: ` then 64 KiB chunks of `a` "
        f"(each after the previous one drained) for {args.seconds:g} s or {args.max_stream_mb:g} MB. RSS: "
        "`/proc/PID/smaps_rollup` summed over the process tree (model workers included), sampled every 0.25 s "
        "for the peak; CPU: utime + stime of the tree from `/proc/PID/stat`. A fresh server for each attack.",
        "- Ready paths probed: modelport `/v2/health/ready`, MLServer `/v2/health/ready`, mlflow `/ping`.",
        "- Before the stream, on the same fresh server: a POST declaring `Content-Length: 10000000000` with no "
        "body (answer awaited 3 s), and one keep-alive connection left idle after an answered GET, watched "
        f"for {args.seconds + args.after:g} s for the server closing it.",
    ]
    for name, venv in venvs.items():
        versions = installed_versions(venv, VERSIONS)
        lines.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.work = args.work.absolute()
    nofile = raise_fd_limit()
    if nofile < args.slow_clients + 200:
        raise SystemExit(
            f"hostile_probe: RLIMIT_NOFILE is {nofile}, too low for {args.slow_clients} slow clients"
        )
    install_cleanup()
    print("virtualenvs:", flush=True)
    venvs = build_venvs(args)
    outcomes = []
    for name in args.servers:
        print(f"{name}:", flush=True)
        outcomes.append(measure(name, venvs[name], args))
    head, body = table(outcomes, args)
    text = render(head, body)
    meta = metadata(args, argv, venvs, nofile)
    print()
    print(text)
    print()
    print("\n".join(meta))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(["# Hostile clients: modelport vs its peers", "", text, "", *meta, ""]))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
