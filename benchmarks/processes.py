"""Start a server as its own process group, time it to readiness, measure its memory, stop it.

Standard library only (Linux /proc), so the benchmark runs under any Python >= 3.10.
"""

from __future__ import annotations

import atexit
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_LIVE: set[ServerProcess] = set()


class ServerFailedError(Exception):
    """A server exited or never became ready; the message names its log file."""


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name sits in parentheses and may itself contain spaces or ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _memory_kb(pid: int) -> tuple[int, int]:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields.get("Rss", "0 kB").split()[0]), int(fields.get("Pss", "0 kB").split()[0])


def tree_memory_mb(root: int) -> tuple[float, float]:
    """(RSS, PSS) summed over the process tree, in MB (10^6 bytes)."""
    sizes = [_memory_kb(pid) for pid in process_tree(root)]
    return sum(r for r, _ in sizes) * 1024 / 1e6, sum(p for _, p in sizes) * 1024 / 1e6


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by the live processes of the tree (exited ones are lost)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def memory_by_process(root: int) -> list[tuple[str, float]]:
    """(short command line, RSS MB) for each process of the tree, to show where the memory sits."""
    out = []
    for pid in process_tree(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [
            Path(a.decode(errors="replace")).name if i < 2 else a.decode(errors="replace")
            for i, a in enumerate(argv)
            if a
        ]
        out.append((" ".join(words)[:60], _memory_kb(pid)[0] * 1024 / 1e6))
    return out


@dataclass(eq=False)
class ServerProcess:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    port: int
    ready_path: str
    log_path: Path
    # Its gRPC port (MLServer's, or modelport's --grpc-port), when it serves gRPC.
    grpc_port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {' '.join(self.argv)}\n".encode())
            log.flush()
            self.started_at = time.perf_counter()
            # A new session: Ctrl-C in the terminal reaches only us, and we stop the group ourselves.
            self.proc = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self)

    def wait_ready(self, timeout: float) -> float:
        """Seconds from launch to the first 200 on the readiness path."""
        assert self.proc is not None
        deadline = self.started_at + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerFailedError(
                    f"{self.name} exited with code {self.proc.returncode} before it was "
                    f"ready; see {self.log_path}"
                )
            try:
                status, _ = http_request(self.port, "GET", self.ready_path, timeout=1.0)
                if status == 200:
                    return time.perf_counter() - self.started_at
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise ServerFailedError(
                    f"{self.name} not ready on {self.ready_path} after {timeout:.0f} s; see {self.log_path}"
                )
            time.sleep(0.02)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return tree_cpu_seconds(self.proc.pid)

    def memory_mb(self) -> tuple[float, float]:
        assert self.proc is not None
        return tree_memory_mb(self.proc.pid)

    def memory_by_process(self) -> list[tuple[str, float]]:
        assert self.proc is not None
        return memory_by_process(self.proc.pid)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None:
            return
        pid = self.proc.pid
        # Snapshot the tree first: once the parent dies its children are re-parented and lost from view.
        tree = process_tree(pid) if self.proc.poll() is None else []
        _signal_all(pid, tree, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in [pid, *tree]):
            self.proc.poll()
            time.sleep(0.05)
        _signal_all(pid, [p for p in tree if _alive(p)], signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        _LIVE.discard(self)


def _signal_all(pgid: int, pids: list[int], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:  # children that started their own session are outside the group
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_all() -> None:
    for server in list(_LIVE):
        server.stop(grace=5.0)


def install_cleanup() -> None:
    """Stop every started server on normal exit, on errors, on Ctrl-C and on SIGTERM/SIGHUP."""
    atexit.register(stop_all)

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # A shell starting us in the background may have set SIGINT to "ignore"; Ctrl-C must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)


def free_ports(count: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Ports the kernel just handed out on 127.0.0.1; held open together so they differ."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            port = s.getsockname()[1]
            if port not in exclude:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports
