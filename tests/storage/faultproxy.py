"""A loopback HTTP proxy in front of a real server that counts requests and injects faults on demand.

Faults are the only thing here that real servers cannot be made to do: drop a connection mid-body,
answer 500 for a while, or stall mid-body.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class Fault:
    path_contains: str
    kind: str  # "drop": close after `after` body bytes; "status": answer `status`; "stall": sleep mid-body
    times: int = 1
    after: int = 0
    status: int = 500
    stall_s: float = 5.0
    method: str = "GET"


@dataclass
class Seen:
    method: str
    path: str
    range: str | None


@dataclass
class ProxyState:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    return fault
        return None

    def gets(self, path_contains: str = "") -> list[Seen]:
        with self.lock:
            return [
                s
                for s in self.seen
                if s.method == "GET" and path_contains in s.path and "list-type" not in s.path
            ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: ProxyState

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _forward(self) -> None:
        st = self.state
        with st.lock:
            st.seen.append(Seen(self.command, self.path, self.headers.get("Range")))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = st.take_fault(self.command, self.path)
        if fault is not None and fault.kind == "status":
            payload = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            self.send_response(fault.status)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Content-Type", "application/xml")
            self.end_headers()
            self.wfile.write(payload)
            return
        up = urlsplit(st.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_HEADERS:
                self.send_header(k, v)
        chunked = resp.getheader("Content-Length") is None and self.command != "HEAD"
        if chunked:
            self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        while True:
            chunk = resp.read(64 * 1024)
            if not chunk:
                break
            if fault is not None and fault.kind in ("drop", "stall") and sent + len(chunk) > fault.after:
                self.wfile.write(chunk[: max(0, fault.after - sent)])
                self.wfile.flush()
                if fault.kind == "stall":
                    time.sleep(fault.stall_s)
                # Cut the connection mid-body: the client sees fewer bytes than Content-Length.
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                conn.close()
                return
            self.wfile.write(chunk)
            sent += len(chunk)
        conn.close()
        if chunked:
            self.close_connection = True

    do_GET = _forward  # noqa: N815 - stdlib naming
    do_HEAD = _forward  # noqa: N815
    do_PUT = _forward  # noqa: N815
    do_POST = _forward  # noqa: N815
    do_DELETE = _forward  # noqa: N815


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.state = ProxyState(upstream=upstream)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.seen.clear()

    def add(self, fault: Fault) -> None:
        with self.state.lock:
            self.state.faults.append(fault)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
