"""Request bodies for the iris model and the load generators that replay them.

HTTP: wrk keeps N connections busy (closed loop); a Lua script sets the POST body and prints exact figures.
gRPC: h2load (Debian `nghttp2-client`) replays one framed ModelInfer request (grpc_client.py builds it) on
N concurrent HTTP/2 streams (closed loop); percentiles come from its per-request log.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
# Row 150 of the iris data set; a class-2 flower, so a wrong column order shows up as a wrong class.
ROW = (5.9, 3.0, 5.1, 1.8)

# Four FP64 inputs named like the signature's columns, shape [1] each: what MLServer's mlflow runtime
# decodes into a one-row DataFrame (a single [1,4] tensor fails its schema check: "missing inputs").
V2_BODY = json.dumps(
    {
        "inputs": [
            {"name": name, "datatype": "FP64", "shape": [1], "data": [value]}
            for name, value in zip(COLUMNS, ROW, strict=True)
        ]
    },
    separators=(",", ":"),
)

MLFLOW_BODY = json.dumps(
    {"dataframe_split": {"columns": list(COLUMNS), "data": [list(ROW)]}}, separators=(",", ":")
)


@dataclass(frozen=True)
class Protocol:
    name: str
    path: str
    body: str

    def predictions(self, payload: bytes) -> list[object]:
        """The predicted classes from a response body, whichever protocol shaped it."""
        doc = json.loads(payload)
        if self.name == "v2":
            return list(doc["outputs"][0]["data"])
        return list(doc["predictions"])


PROTOCOLS = {
    "v2": Protocol("v2", "/v2/models/iris/infer", V2_BODY),
    "mlflow": Protocol("mlflow", "/invocations", MLFLOW_BODY),
}

# Open Inference Protocol over gRPC, unary ModelInfer; its request is binary (grpc_client.py), not a body here.
GRPC = "grpc"
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"

# Figures come back from wrk's done() hook as one JSON line: no parsing of its human-readable units.
_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "mean_us": %%.1f, "max_us": %%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    # CPU seconds the load generator itself used during the run (wrk, or h2load for gRPC).
    wrk_cpu_s: float = 0.0
    generator: str = "wrk"
    # Server process tree's CPU seconds during the run (gRPC rows), to set the generator's share against.
    server_cpu_s: float = 0.0
    # gRPC: h2load's counts behind `errors` (completed, answers that carried a message, non-200s, ...).
    detail: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


def find_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("serve_bench: wrk not found on PATH (Debian/Ubuntu: apt-get install wrk)")
    return wrk


def write_lua(protocol: Protocol, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{protocol.name}.lua"
    path.write_text(_LUA % {"body": protocol.body})
    return path


def wrk_threads(connections: int, cap: int) -> int:
    # wrk needs at least one connection per thread; more threads than cores only steal from the server.
    return max(1, min(connections, cap, os.cpu_count() or 1))


def run_wrk(
    wrk: str, url: str, lua: Path, connections: int, threads: int, seconds: float, log: Path | None = None
) -> LoadResult:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "2s",
        "-s",
        str(lua),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk shares the cores with the server, so what it took is reported beside the figures.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(argv) + "\n" + done.stdout + done.stderr)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            r = json.loads(line.removeprefix("WRK_RESULT "))
            return LoadResult(
                requests=r["requests"],
                seconds=r["duration_us"] / 1e6,
                p50_ms=r["p50_us"] / 1e3,
                p99_ms=r["p99_us"] / 1e3,
                non_2xx=r["status"],
                socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
                wrk_cpu_s=cpu,
            )
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip()[-300:]}")


def find_h2load() -> str:
    h2load = shutil.which("h2load")
    if h2load is None:
        raise SystemExit(
            "serve_bench: h2load not found on PATH, needed for --protocols grpc "
            "(Debian/Ubuntu: apt-get install nghttp2-client)"
        )
    return h2load


def h2load_layout(streams: int, connections: int) -> tuple[int, int]:
    """(connections, max concurrent streams per connection) for `streams` streams in flight in all."""
    conns = max(1, min(connections, streams))
    return conns, math.ceil(streams / conns)


_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
    r"(\d+) timeout"
)
_H2_FINISHED = re.compile(r"finished in ([0-9.]+)(us|ms|s)")
_H2_DATA = re.compile(r"\((\d+)\) data")


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def run_h2load(
    h2load: str,
    url: str,
    request_file: Path,
    streams: int,
    connections: int,
    seconds: float,
    response_bytes: int,
    log: Path,
) -> LoadResult:
    """Replay a framed gRPC request on `streams` concurrent streams for `seconds`; exact p50/p99 from the log.

    h2load sees HTTP only: a gRPC error is a 200 whose status sits in the trailers, with no message. Every
    good answer to this request has the same size (`response_bytes`, the 5-byte prefix included, measured by
    grpc_client.py check), so the DATA bytes received count the answers that carried a message; the other
    completed requests are errors.
    """
    conns, per_conn = h2load_layout(streams, connections)
    argv = [
        h2load,
        f"-c{conns}",
        f"-m{per_conn}",
        "-t1",
        f"-D{max(1, round(seconds))}",
        "-d",
        str(request_file),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--log-file",
        str(log.with_suffix(".tsv")),
        url,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    log.with_suffix(".tsv").unlink(missing_ok=True)  # h2load appends to its --log-file
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log.write_text(" ".join(argv) + "\n" + done.stdout + done.stderr)
    counts = _H2_REQUESTS.search(done.stdout)
    finished = _H2_FINISHED.search(done.stdout)
    data = _H2_DATA.search(done.stdout)
    if not (counts and finished and data):
        raise RuntimeError(f"h2load gave no result (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    _total, _started, completed, _ok, failed, errored, timeout = (int(g) for g in counts.groups())
    wall = float(finished.group(1)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[finished.group(2)]
    data_bytes = int(data.group(1))
    durations: list[int] = []
    non_200 = 0
    tsv = log.with_suffix(".tsv")
    for line in tsv.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        if fields[1] != "200":
            non_200 += 1
        durations.append(int(fields[2]))
    tsv.unlink()  # one line per request: a few MB per run; the summary stays in `log`
    durations.sort()
    with_message, odd = divmod(data_bytes, response_bytes) if response_bytes else (completed, 0)
    no_message = max(0, completed - with_message)
    detail = (
        f"{completed} done, {with_message} with a message of {response_bytes} B"
        f"{f' (+{odd} stray bytes)' if odd else ''}, {non_200} non-200, {failed} failed, {errored} errored, "
        f"{timeout} timeouts (h2load)"
    )
    return LoadResult(
        requests=completed,
        seconds=wall,
        p50_ms=percentile(durations, 50) / 1e3,
        p99_ms=percentile(durations, 99) / 1e3,
        # Each of these is a completed request without a message; max(), not a sum, so none counts twice.
        non_2xx=max(no_message, non_200, failed),
        socket_errors=0,
        wrk_cpu_s=cpu,
        generator="h2load",
        detail=detail,
    )
