"""The warm template: imports numpy, pandas and mlflow once (and may load the model), then
forks workers on request, reaps them and reports their exit codes to the server.

Control messages are single JSON datagrams on a SOCK_SEQPACKET socket. A fork request carries
the new worker's two sockets (SCM_RIGHTS); its reply carries the worker's pidfd, so the server
can signal a process that is not its child without racing pid reuse.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional, Tuple

from . import main as worker_main

MAX_MESSAGE = 1 << 16
# Imported before the hello: what every worker needs, and free of threads that fork would lose
# (numpy's OpenBLAS and pyarrow's jemalloc threads re-create themselves after fork).
BASE_MODULES = ("numpy", "pandas", "mlflow.pyfunc")


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))


def _sockets(exclude: Tuple[int, ...]) -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        if int(name) in exclude:
            continue
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def _python_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]


class Template:
    def __init__(self, ctl_fd: int) -> None:
        self.ctl = socket.socket(fileno=ctl_fd)
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.model: Optional[Any] = None

    def send(self, message: Dict[str, Any], fds: Optional[List[int]] = None) -> None:
        socket.send_fds(self.ctl, [json.dumps(message).encode()], fds or [])

    def run(self) -> None:
        gc.disable()  # see main.serve: collecting while mlflow's objects pile up only costs time
        started = time.perf_counter()
        hello: Dict[str, Any] = {"op": "hello", "pid": os.getpid()}
        try:
            for name in BASE_MODULES:
                __import__(name)
        except Exception as exc:  # the server decides from the versions and the reason
            hello["unsafe"] = f"importing {name} failed: {type(exc).__name__}: {exc}"
        hello.update(worker_main._versions(), import_s=time.perf_counter() - started)
        threads = _python_threads()
        if threads and "unsafe" not in hello:
            hello["unsafe"] = (
                f"threads run in it after importing {', '.join(BASE_MODULES)} ({', '.join(threads)})"
            )
        signal.set_wakeup_fd(self.wake_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD wakes the loop
        try:
            self.send(hello)
            self._loop()
        except OSError:
            return  # the server went away: its workers see their sockets close and exit too

    def _loop(self) -> None:
        while True:
            readable, _, _ = select.select([self.ctl, self.wake_r], [], [])
            if self.wake_r in readable:
                self._reap()
            if self.ctl in readable:
                data, fds, _, _ = socket.recv_fds(self.ctl, MAX_MESSAGE, 2)
                if not data:
                    return  # the server closed the channel: it is stopping or gone
                message = json.loads(data)
                out: List[int] = []
                try:
                    reply, out = self._handle(message, fds)
                except Exception as exc:  # a failed load or fork is answered; the template lives on
                    traceback.print_exc()
                    reply = {"ok": False, "message": f"{type(exc).__name__}: {exc}"}
                finally:
                    for fd in fds:
                        os.close(fd)  # the worker's sockets: in the worker now, or not needed
                try:
                    self.send({"id": message.get("id"), **reply}, out)
                finally:
                    for fd in out:
                        os.close(fd)

    def _handle(self, message: Dict[str, Any], fds: List[int]) -> Tuple[Dict[str, Any], List[int]]:
        op = message.get("op")
        if op == "fork":
            return self._fork(message, fds)
        if op == "prepare":
            return {"ok": True, **self._prepare(message)}, []
        raise ValueError(f"unknown template operation {op!r}")

    def _prepare(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """Import the flavor's modules and load the model where that leaves the process forkable."""
        for name in message.get("imports") or []:
            __import__(name)
        threads = _python_threads()
        if threads:
            return {
                "unsafe": f"importing {', '.join(message['imports'])} started threads ({', '.join(threads)})"
            }
        path = message.get("load")
        if not path:
            return {}
        from .model import LoadedModel

        tasks, sockets = _tasks(), _sockets((self.ctl.fileno(), self.wake_r.fileno(), self.wake_w.fileno()))
        model = LoadedModel(path)
        found = []
        if _python_threads() or _tasks() > tasks:
            found.append("threads")
        if _sockets((self.ctl.fileno(), self.wake_r.fileno(), self.wake_w.fileno())) > sockets:
            found.append("sockets")
        if found:
            return {"load_unsafe": f"loading the model started {' and '.join(found)}"}
        self.model = model
        return {"load_s": model.load_s}

    def _fork(self, message: Dict[str, Any], fds: List[int]) -> Tuple[Dict[str, Any], List[int]]:
        if len(fds) != 2:
            raise ValueError(f"a fork request carries 2 sockets, not {len(fds)}")
        gc.freeze()  # what the template allocated stays in shared pages: no collection touches it
        pid = os.fork()
        if pid == 0:
            self._become_worker(fds, message.get("cwd"))
        pidfds: List[int] = []
        try:
            pidfds.append(os.pidfd_open(pid))
        except (AttributeError, OSError):
            pass  # an old kernel: the server refuses the fork (it checked pidfd_open itself)
        return {"ok": True, "pid": pid}, pidfds

    def _become_worker(self, fds: List[int], cwd: Optional[str]) -> None:
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            for sock in (self.ctl, self.wake_r, self.wake_w):
                sock.close()
            os.setsid()  # its own process group, as a spawned worker has
            if cwd:
                os.chdir(cwd)
            worker_main.PRELOADED = self.model
            worker_main.serve(fds[0], fds[1])
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            # The template's loop must never run in a worker: leave here, after what a normal
            # interpreter exit would do (mlflow flushes its trace queue at exit).
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _reap(self) -> None:
        try:
            while self.wake_r.recv(512):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"op": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    Template(int(args[0])).run()


if __name__ == "__main__":
    main()
