"""Worker entry point: answer frames on an inherited socket until the server goes away.

A reader thread answers pings at once, so a long prediction never looks like a hung
worker; everything else runs in order on the main thread.
"""

from __future__ import annotations

import os
import platform
import queue
import socket
import sys
import threading
import traceback
from typing import Any, Dict, List, Optional

from . import framing
from .model import LoadedModel, WorkerError


class Channel:
    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.lock = threading.Lock()

    def send(self, header: Dict[str, Any], buffers: List[Any]) -> None:
        pieces = framing.encode(header, buffers)
        with self.lock:
            if sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in pieces) < 65536:
                self.sock.sendall(b"".join(pieces))  # one syscall for the common small reply
            else:
                for piece in pieces:
                    self.sock.sendall(piece)

    def recv(self) -> Any:
        return framing.read_frame_blocking(self.sock)


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in ("mlflow", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _reader(channel: Channel, work: "queue.Queue[Any]") -> None:
    try:
        while True:
            header, buffers = channel.recv()
            if header.get("op") == "ping":
                channel.send({"id": header.get("id"), "ok": True}, [])
            else:
                work.put((header, buffers))
    except (EOFError, OSError):
        work.put(None)


def serve(fd: int) -> None:
    channel = Channel(fd)
    try:
        channel.send({"op": "hello", "pid": os.getpid(), **_versions()}, [])
    except OSError:
        return  # the server went away before we started: nothing to serve
    work: "queue.Queue[Any]" = queue.Queue()
    threading.Thread(target=_reader, args=(channel, work), daemon=True).start()
    model: Optional[LoadedModel] = None
    while True:
        item = work.get()
        if item is None:
            return
        header, buffers = item
        op, rid = header.get("op"), header.get("id")
        try:
            if op == "load":
                model = LoadedModel(header["path"])
                warm = model.warm_up() if header.get("warm_up", True) else None
                reply, out = (
                    {"load_s": model.load_s, "warm_up_s": warm, "fast_path": model.fast is not None},
                    [],
                )
            elif model is None:
                raise WorkerError("model_not_ready", "the model is not loaded yet")
            elif op == "predict":
                reply, out = model.predict(header, buffers)
            elif op == "invocations":
                reply, out = model.invocations(header, buffers)
            else:
                raise WorkerError("internal", f"unknown worker operation {op!r}")
            reply.update(id=rid, ok=True)
        except WorkerError as exc:
            reply, out = {"id": rid, "ok": False, "code": exc.code, "message": exc.message}, []
        except Exception as exc:  # never let one request kill the worker
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"
            code = "model_load_error" if op == "load" else "prediction_error"
            reply, out = {"id": rid, "ok": False, "code": code, "message": message}, []
        try:
            channel.send(reply, out)
        except OSError:
            return


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    serve(int(args[0]))


if __name__ == "__main__":
    main()
