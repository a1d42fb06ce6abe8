"""Worker entry point: answer frames on two inherited sockets until the server goes away.

Requests are read and answered in order by the main thread, with no thread hand-off on
the hot path; pings come on a second socket that a small thread answers, so a long
prediction never looks like a hung worker. Replies carry the seconds predict (or load) took,
for the server's metrics.
"""

from __future__ import annotations

import gc
import os
import platform
import socket
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

from . import framing
from .model import LoadedModel, WorkerError


class Channel:
    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        # Buffered: a small frame arrives in one recv instead of one per part.
        self.stream = self.sock.makefile("rb", buffering=1 << 16)

    def send(self, header: Dict[str, Any], buffers: List[Any]) -> None:
        pieces = framing.encode(header, buffers)
        if sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in pieces) < 65536:
            self.sock.sendall(b"".join(pieces))  # one syscall for the common small reply
        else:
            for piece in pieces:
                self.sock.sendall(piece)

    def recv(self) -> Any:
        return framing.read_frame_blocking(self.stream)


def _versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {"python": platform.python_version(), "mlflow": _mlflow_version()}
    try:
        out["numpy"] = metadata.version("numpy")
    except metadata.PackageNotFoundError:
        out["numpy"] = None
    return out


def _mlflow_version() -> Optional[str]:
    """What ``mlflow.__version__`` will say, without importing mlflow (the hello goes out first).

    Read from the package's own version.py: the distribution may be mlflow, mlflow-skinny
    (AzureML writes only that) or a local build whose metadata names something else.
    """
    import importlib.util
    import re
    from importlib import metadata

    imported = sys.modules.get("mlflow")  # a template worker imports it before its hello
    if imported is not None and isinstance(getattr(imported, "__version__", None), str):
        return str(imported.__version__)
    try:
        spec = importlib.util.find_spec("mlflow")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        try:
            with open(os.path.join(folder, "version.py"), encoding="utf-8") as f:
                found = re.search(r"^VERSION\s*=\s*[\"']([^\"']+)[\"']", f.read(), re.M)
        except OSError:
            continue
        if found:
            return found.group(1)
    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return None


# The model a warm template loaded before forking this worker (see ``template``), if any.
PRELOADED: Optional[LoadedModel] = None


def _answer_pings(channel: Channel) -> None:
    try:
        while True:
            header, _ = channel.recv()
            channel.send({"id": header.get("id"), "ok": True}, [])
    except (EOFError, OSError):
        return


def serve(fd: int, ping_fd: int) -> None:
    # Importing mlflow and loading a model allocate millions of objects that all live on:
    # collecting while they pile up only costs time (2.1 -> 1.8 s for the iris model).
    gc.disable()
    channel = Channel(fd)
    try:
        channel.send({"op": "hello", "pid": os.getpid(), **_versions()}, [])
    except OSError:
        return  # the server went away before we started: nothing to serve
    threading.Thread(target=_answer_pings, args=(Channel(ping_fd),), daemon=True).start()
    model: Optional[LoadedModel] = None
    while True:
        try:
            header, buffers = channel.recv()
        except (EOFError, OSError):
            return
        op, rid = header.get("op"), header.get("id")
        reply: Dict[str, Any]
        out: List[Any] = []
        try:
            if op == "load":
                preloaded = PRELOADED is not None and PRELOADED.path == header["path"]
                model = PRELOADED if preloaded else LoadedModel(header["path"])
                assert model is not None
                warm = model.warm_up() if header.get("warm_up", True) else None
                reply, out = (
                    {
                        "load_s": 0.0 if preloaded else model.load_s,
                        "warm_up_s": warm,
                        "fast_path": model.fast is not None,
                        "preloaded": preloaded,
                    },
                    [],
                )
                # mlflow leaves millions of long-lived objects; without this every full
                # collection walks them all and shows up as tens of ms in tail latency.
                gc.freeze()
                gc.enable()
            elif model is None:
                raise WorkerError("model_not_ready", "the model is not loaded yet")
            elif op == "predict":
                started = time.perf_counter()
                reply, out = model.predict(header, buffers)
                reply["predict_s"] = time.perf_counter() - started
            elif op == "invocations":
                started = time.perf_counter()
                reply, out = model.invocations(header, buffers)
                reply["predict_s"] = time.perf_counter() - started
            else:
                raise WorkerError("internal", f"unknown worker operation {op!r}")
            reply.update(id=rid, ok=True)
        except WorkerError as exc:
            reply, out = {"id": rid, "ok": False, "code": exc.code, "message": exc.message}, []
            if exc.details:
                reply["details"] = exc.details
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
    serve(int(args[0]), int(args[1]))


if __name__ == "__main__":
    main()
