"""Request bodies for the iris model and the wrk runs that replay them.

wrk keeps N connections busy (closed loop); a Lua script sets the POST body and prints exact figures.
"""

from __future__ import annotations

import json
import os
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
    wrk_cpu_s: float = 0.0

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
