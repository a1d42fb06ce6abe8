"""SIGTERM under keep-alive load: every request a client wrote is answered, or its connection
was closed before the request was written; responses after SIGTERM say ``Connection: close``."""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import start_server

pytestmark = pytest.mark.slow

ROW = json.dumps(
    {
        "inputs": [
            {"name": n, "datatype": "FP64", "shape": [1], "data": [v]}
            for n, v in zip(
                ["sepal_length", "sepal_width", "petal_length", "petal_width"], [5.1, 3.5, 1.4, 0.2]
            )
        ]
    }
).encode()
REQUEST = (
    b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(ROW)
    + ROW
)


@dataclass
class Tally:
    answered: int = 0
    answered_after_term: int = 0
    close_after_term: int = 0
    lost: int = 0
    errors: list[str] = field(default_factory=list)


def closed_by_peer(s: socket.socket) -> bool:
    readable, _, _ = select.select([s], [], [], 0)
    if not readable:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def read_response(s: socket.socket) -> tuple[int, dict[str, str]] | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return int(lines[0].split()[1]), headers


def client(port: int, tally: Tally, lock: threading.Lock, termed: threading.Event, stop_at: float) -> None:
    s: socket.socket | None = None
    while time.monotonic() < stop_at:
        if s is None:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                return  # the listener is closed: the server is draining
        if closed_by_peer(s):
            s.close()
            s = None
            continue  # closed before this request was written: not lost
        after_term = termed.is_set()
        try:
            s.sendall(REQUEST)
            answer = read_response(s)
        except OSError:
            answer = None
        with lock:
            if answer is None:
                tally.lost += 1
            else:
                status, headers = answer
                if status != 200:
                    tally.errors.append(f"status {status}")
                tally.answered += 1
                if after_term:
                    tally.answered_after_term += 1
                    tally.close_after_term += headers.get("connection") == "close"
        if answer is None or answer[1].get("connection") == "close":
            s.close()
            s = None
    if s is not None:
        s.close()


def test_sigterm_under_keep_alive_load_loses_nothing(iris_model: Path, tmp_path: Path) -> None:
    srv = start_server(iris_model, "--graceful-timeout", "20", tmp=tmp_path)
    tally, lock, termed = Tally(), threading.Lock(), threading.Event()
    stop_at = time.monotonic() + 60
    threads = [
        threading.Thread(target=client, args=(srv.port, tally, lock, termed, stop_at)) for _ in range(8)
    ]
    try:
        for t in threads:
            t.start()
        time.sleep(2.0)
        with lock:
            before = tally.answered
        assert before > 0, srv.log()
        termed.set()
        srv.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(70)
        code = srv.proc.wait(30)
    finally:
        srv.stop()
    assert tally.lost == 0, f"{tally.lost} requests written and never answered\n{srv.log()}"
    assert not tally.errors, tally.errors[:5]
    assert code == 0, srv.log()
    # Requests in flight at SIGTERM were answered, and told the connection closes.
    if tally.answered_after_term:
        assert tally.close_after_term >= 1
