"""The template's control channel, driven by hand: bad requests are answered, not fatal."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from modelport.workers.process import RUNTIME_DIR
from modelport.workers.template import TEMPLATE_BOOTSTRAP


def _ask(sock: socket.socket, message: dict[str, object], fds: list[int] | None = None) -> dict[str, object]:
    socket.send_fds(sock, [json.dumps(message).encode()], fds or [])
    data, _, _, _ = socket.recv_fds(sock, 1 << 16, 1)
    return dict(json.loads(data))


def test_bad_requests_get_errors_and_the_template_exits_when_the_server_closes() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", TEMPLATE_BOOTSTRAP, str(RUNTIME_DIR), str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    theirs.close()
    try:
        ours.settimeout(120)
        hello = json.loads(socket.recv_fds(ours, 1 << 16, 1)[0])
        assert hello["op"] == "hello" and hello["pid"] == proc.pid and hello["mlflow"]
        assert "unsafe" not in hello  # numpy, pandas and mlflow start no Python thread
        one, other = socket.socketpair()
        with one, other:
            reply = _ask(ours, {"op": "fork", "id": 1, "cwd": "/"}, [one.fileno()])
        assert reply == {
            "id": 1,
            "ok": False,
            "message": "ValueError: a fork request carries 2 sockets, not 1",
        }
        reply = _ask(ours, {"op": "explode", "id": 2})
        assert (
            reply["id"] == 2
            and reply["ok"] is False
            and "unknown template operation" in str(reply["message"])
        )
        reply = _ask(ours, {"op": "prepare", "id": 3, "imports": ["json"], "load": None})
        assert reply == {"id": 3, "ok": True}  # still alive and answering
    finally:
        ours.close()
    assert proc.wait(timeout=60) == 0  # the closed channel ends it
