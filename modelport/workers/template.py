"""The server's side of a warm template (``modelport_worker.template``): one process under the
model's interpreter that has imported mlflow (and may hold the loaded model) and forks workers.

A forked worker is the template's child, not the server's: the template reaps it and reports
its exit code; the server signals it through a pidfd the template sends with the fork reply,
and learns that it exited from that pidfd even when the template itself is gone.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import ModelNotReady
from modelport.mlmodel.types import ModelSpec

log = logging.getLogger("modelport.workers")

# The worker runtime (stdlib and numpy only), put on the model interpreter's path.
RUNTIME_DIR = Path(__file__).resolve().parent.parent / "_runtime"

TEMPLATE_BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from modelport_worker.template import main; main(sys.argv[2:])"
)
MAX_MESSAGE = 1 << 16
# After a forked worker's pidfd says it exited, how long to wait for the template's exit report.
EXIT_REPORT_WAIT_S = 2.0
# A fork takes milliseconds; a template that has not answered by then is stuck and is replaced.
FORK_TIMEOUT_S = 10.0

# Flavors whose loaded model is plain Python and C++ objects (no thread pools, open files or
# sockets): loaded once in the template, shared by the workers' copy-on-write pages.
LOAD_ONCE = {
    "sklearn": ("sklearn", "mlflow.sklearn"),
    "xgboost": ("xgboost", "mlflow.xgboost"),
    "lightgbm": ("lightgbm", "mlflow.lightgbm"),
    "python_function": (),  # custom pyfunc: checked for threads and sockets after the load
}


@dataclass(frozen=True)
class ForkPlan:
    """What the template imports beyond numpy, pandas and mlflow, and whether it loads the model."""

    imports: tuple[str, ...]
    preload: bool
    why: str


def plan_for(spec: ModelSpec) -> ForkPlan:
    flavor = spec.primary_flavor
    if flavor == "python_function" and spec.loader_module not in (None, "mlflow.pyfunc.model"):
        flavor = spec.loader_module or flavor  # a custom loader module: loaded per worker
    if flavor in LOAD_ONCE:
        return ForkPlan(LOAD_ONCE[flavor], True, f"{flavor}: loaded once in the template")
    # Others (pytorch, tensorflow, onnx, spark, ...) may start thread pools or CUDA, or hold files
    # and sockets, when they import or load: the template stays free of them.
    return ForkPlan((), False, f"{flavor}: loaded in each worker after the fork")


def fork_unavailable() -> str | None:
    """Why this machine cannot fork workers from a template; None when it can."""
    if sys.platform != "linux":
        return f"fork without exec is unsafe on {sys.platform} (system frameworks hold threads)"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError) as exc:
        return f"no pidfd_open (Linux >= 5.3): {exc}"
    return None


class ForkUnsafe(Exception):
    """The template may not fork workers (threads at import); the pool spawns them instead."""


class ForkedProcess:
    """A worker forked by a template: what ``asyncio.subprocess.Process`` offers the pool."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.running = True
        self.code_lost = False  # exited, but the template that knew its exit code is gone
        self._orphan = False
        self._pidfd = pidfd
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._loop.add_reader(pidfd, self._exited)

    def _exited(self) -> None:
        self._close_pidfd()
        self.running = False
        if self._orphan:
            self._settle_unknown()
        elif not self._done.done():
            self._timer = self._loop.call_later(EXIT_REPORT_WAIT_S, self._settle_unknown)

    def reported(self, code: int) -> None:
        self.returncode = code
        self.running = False
        self._close_pidfd()
        if self._timer is not None:
            self._timer.cancel()
        if not self._done.done():
            self._done.set_result(None)

    def orphaned(self) -> None:
        """No exit report will come (the template died): settle once the process is gone."""
        self._orphan = True
        if not self.running:
            self._settle_unknown()

    def _settle_unknown(self) -> None:
        if not self._done.done():
            self.code_lost = True
            self._done.set_result(None)

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def terminate(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the worker, then to its process group (its own children), as for a spawned one."""
        if self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            # Not yet reaped (its pidfd is not readable), so the group id is still its own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    async def wait(self) -> int | None:
        await asyncio.shield(self._done)
        return self.returncode


class Template:
    def __init__(self, python: str, cwd: str) -> None:
        self.python = python
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.hello: dict[str, Any] = {}
        self.gone = False
        self.prepared = False  # imports done and the plan applied: it may fork workers
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], list[int]]]] = {}
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._children: dict[int, ForkedProcess] = {}

    @property
    def ready_for_forks(self) -> bool:
        return self.prepared and not self.gone

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def launch(self, runtime_dir: str) -> None:
        """Start the process; its imports run while the server goes on (``ready`` waits for them)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.python,
                "-I",
                "-c",
                TEMPLATE_BOOTSTRAP,
                runtime_dir,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
            )
        except OSError as exc:
            ours.close()
            raise ForkUnsafe(f"cannot start a template with {self.python}: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        loop.add_reader(ours.fileno(), self._readable)

    async def ready(self, timeout: float) -> dict[str, Any]:
        """The template's hello, once its imports are done."""
        assert self._hello is not None
        try:
            self.hello = await asyncio.wait_for(asyncio.shield(self._hello), timeout)
        except asyncio.TimeoutError as exc:
            raise ForkUnsafe(f"the template did not finish its imports within {timeout:.0f} s") from exc
        if self.hello.get("unsafe"):
            raise ForkUnsafe(self.hello["unsafe"])
        return self.hello

    async def prepare(self, plan: ForkPlan, path: str | None) -> dict[str, Any]:
        reply, _ = await self._call({"op": "prepare", "imports": list(plan.imports), "load": path})
        if reply.get("unsafe"):
            raise ForkUnsafe(reply["unsafe"])
        return reply

    async def fork(self, fds: tuple[int, int], cwd: str) -> ForkedProcess:
        try:
            reply, pidfds = await asyncio.wait_for(
                self._call({"op": "fork", "cwd": cwd}, list(fds)), FORK_TIMEOUT_S
            )
        except asyncio.TimeoutError as exc:
            self.kill()
            raise ModelNotReady(
                f"the worker template (pid {self.pid}) did not fork within {FORK_TIMEOUT_S:g} s; it was killed"
            ) from exc
        pid = reply["pid"]
        child = self._children.get(pid)
        if child is None:  # (the template sent no pidfd: fork_unavailable() keeps this from happening)
            for fd in pidfds:
                os.close(fd)
            raise ModelNotReady(f"the worker template forked pid {pid} without a pidfd")
        return child

    async def _call(
        self, message: dict[str, Any], fds: list[int] | None = None
    ) -> tuple[dict[str, Any], list[int]]:
        if self.gone or self._sock is None:
            raise ModelNotReady("the worker template is not running")
        rid = next(self._ids)
        fut: asyncio.Future[tuple[dict[str, Any], list[int]]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            socket.send_fds(self._sock, [json.dumps({**message, "id": rid}).encode()], fds or [])
        except OSError as exc:
            self._pending.pop(rid, None)
            raise ModelNotReady(f"the worker template is not reachable: {exc}") from exc
        reply, got = await fut
        if not reply.get("ok"):
            raise ModelNotReady(f"the worker template failed: {reply.get('message')}")
        return reply, got

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self._lost()
                return
            self._message(json.loads(data), fds)

    def _message(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(message)
        elif op == "exit":
            child = self._children.pop(message["pid"], None)
            if child is not None:
                child.reported(message["code"])
        else:
            if message.get("pid") and fds:
                # Registered now, before any exit report for it can be read.
                self._children[message["pid"]] = ForkedProcess(message["pid"], fds[0])
                fds = []
            fut = self._pending.pop(message.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result((message, fds))

    def _lost(self) -> None:
        """The control channel closed: the template exited (or is exiting)."""
        if self.gone:
            return
        self.gone = True
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        error = ModelNotReady("the worker template exited")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(ForkUnsafe("the template exited during its imports"))
        # Its workers live on (their sockets are ours); their exits are known from their pidfds.
        for child in self._children.values():
            child.orphaned()
        self._children.clear()

    def kill(self) -> None:
        self._lost()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        self._lost()
        return code

    async def stop(self, grace: float = 5.0) -> None:
        """Close the channel (the template exits when it reads the end); kill it after ``grace``."""
        self._lost()
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except asyncio.TimeoutError:
            self.kill()
            await proc.wait()


# Templates launched before the model's interpreter was confirmed (start-up overlap), by interpreter.
_EARLY: dict[str, Template] = {}
_DISCARDING: set[asyncio.Task[None]] = set()


async def launch_template(python: str, runtime_dir: str) -> Template | None:
    """A template for ``python``, started now in a private folder; None where forking is unavailable."""
    if fork_unavailable() is not None:
        return None
    template = Template(python, tempfile.mkdtemp(prefix="modelport-workers-"))
    # A server that fails before a pool adopts (and later removes) this folder still removes it.
    atexit.register(shutil.rmtree, template.cwd, True)
    try:
        await template.launch(runtime_dir)
    except ForkUnsafe as exc:
        log.info("no worker template started ahead: %s", exc)
        shutil.rmtree(template.cwd, ignore_errors=True)
        return None
    return template


async def launch_early(python: str, runtime_dir: str) -> None:
    """Start a template for ``python`` now, so that its imports overlap the rest of start-up."""
    if python in _EARLY:
        return
    template = await launch_template(python, runtime_dir)
    if template is not None:
        _EARLY[python] = template
        log.info(
            "worker template pid %s started early for %s (its imports overlap the checks)",
            template.pid,
            python,
        )


def take_early(python: str) -> Template | None:
    """The early template for ``python``, if one was launched; the others are stopped."""
    template = _EARLY.pop(python, None)
    if _EARLY:
        task = asyncio.get_running_loop().create_task(discard_early())
        _DISCARDING.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(_DISCARDING.discard)
    return template


async def discard_early() -> None:
    """Stop the early templates no pool took (the model runs under another interpreter)."""
    templates = list(_EARLY.values())
    _EARLY.clear()
    for template in templates:
        await template.stop()
        shutil.rmtree(template.cwd, ignore_errors=True)
