"""One worker process: spawned under any interpreter, talked to over a socket pair.

The worker runs ``modelport_worker`` from ``modelport/_runtime`` alone, so the model's
environment needs neither modelport nor the server's packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from modelport.errors import ModelNotReady, WorkerCrashed
from modelport.inference import Deadline
from modelport.workers import ipc
from modelport.workers.ipc import Reply
from modelport.workers.template import RUNTIME_DIR, ForkedProcess, Template

log = logging.getLogger("modelport.workers")

BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); from modelport_worker.main import main; main(sys.argv[2:])"
)


class WorkerProcess:
    def __init__(self, index: int, python: str, on_ready_change: Callable[[], None] | None = None) -> None:
        self.index = index
        self.python = python
        self.proc: asyncio.subprocess.Process | ForkedProcess | None = None
        # Set by the pool: the worker's private working directory (MLflow writes its default
        # tracking store there, not in the user's folder).
        self.cwd: str | None = None
        self.hello: dict[str, Any] = {}
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        # Why the pool killed this worker ("timeout", "unresponsive"); None while it is trusted.
        self.kill_cause: str | None = None
        self.kill_reason = ""
        # When the outstanding ping was sent (event loop clock); None when none is outstanding.
        self.ping_sent: float | None = None
        self.on_ready_change = on_ready_change
        self._ready = False
        self._ids = itertools.count(1)
        # Requests answered with a timeout at a client's deadline that the worker still runs: the timer
        # that replaces it if it still runs them at the server's limit.
        self._abandoned: dict[int, asyncio.TimerHandle] = {}
        self._channel: ipc.FrameProtocol | None = None
        self._ping_writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ready(self) -> bool:
        """Loaded, alive and trusted: it may be given requests."""
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        if value != self._ready:
            self._ready = value
            if self.on_ready_change is not None:
                self.on_ready_change()

    @property
    def alive(self) -> bool:
        proc = self.proc
        if isinstance(proc, ForkedProcess):
            return proc.running
        return proc is not None and proc.returncode is None

    @property
    def forked(self) -> bool:
        return isinstance(self.proc, ForkedProcess)

    @property
    def load(self) -> int:
        return len(self.pending) + len(self._abandoned)

    async def start(self, timeout: float, template: Template | None = None) -> dict[str, Any]:
        """Start the worker: forked by ``template`` when given, else spawned; return its hello."""
        # Two socket pairs: requests (answered in order by the worker's main thread) and pings
        # (answered by a side thread, so a long prediction does not look like a hang).
        parent, child = socket.socketpair()
        ping_parent, ping_child = socket.socketpair()
        fds = (child.fileno(), ping_child.fileno())
        loop = self._loop = asyncio.get_running_loop()
        self._hello = loop.create_future()
        self.kill_cause = None
        self.kill_reason = ""
        self.ping_sent = None
        try:
            if template is not None:
                self.proc = await template.fork(fds, self.cwd or template.cwd)
            else:
                self.proc = await asyncio.create_subprocess_exec(
                    self.python,
                    "-I",
                    "-c",
                    BOOTSTRAP,
                    str(RUNTIME_DIR),
                    *map(str, fds),
                    pass_fds=fds,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C on the server reaches the server, which stops workers
                    cwd=self.cwd,
                )
        except (OSError, ModelNotReady) as exc:
            parent.close()
            ping_parent.close()
            if isinstance(exc, ModelNotReady):
                raise
            raise ModelNotReady(f"cannot start a worker with {self.python}: {exc}") from exc
        finally:
            child.close()
            ping_child.close()
        _, self._channel = await loop.create_unix_connection(
            lambda: ipc.FrameProtocol(self._on_frame), sock=parent
        )
        ping_reader, self._ping_writer = await asyncio.open_unix_connection(sock=ping_parent)
        self._reader_task = asyncio.create_task(self._watch_channel(self._channel))
        self._ping_task = asyncio.create_task(self._read_pings(ping_reader))
        try:
            self.hello = await asyncio.wait_for(asyncio.shield(self._hello), timeout)
        except asyncio.TimeoutError as exc:
            self.kill()
            raise ModelNotReady(f"worker {self.index} did not start within {timeout:.0f} s") from exc
        return self.hello

    async def request(
        self, header: dict[str, Any], buffers: Sequence[Any] = (), deadline: Deadline | None = None
    ) -> Reply:
        """Send one frame and wait for its reply; at ``deadline`` answer RequestTimeout instead."""
        channel, loop = self._channel, self._loop
        if not self.alive or channel is None or loop is None or self.kill_cause is not None:
            raise WorkerCrashed(f"worker {self.index} is not running")
        rid = next(self._ids)
        header["id"] = rid
        fut: asyncio.Future[Reply] = loop.create_future()
        self.pending[rid] = fut
        timer = None if deadline is None else loop.call_at(deadline.at, self._overrun, rid, deadline)
        try:
            transport = channel.transport
            assert transport is not None
            transport.writelines(ipc.encode(header, buffers))
            await channel.drain()
            reply, out = await fut
        finally:
            if timer is not None:
                timer.cancel()
        if not reply.get("ok"):
            raise ipc.error_of(reply)
        return reply, out

    def _overrun(self, rid: int, deadline: Deadline) -> None:
        fut = self.pending.pop(rid, None)
        if fut is None or fut.done():
            return
        fut.set_exception(deadline.error())
        if deadline.kill_at is None:
            return  # no server limit: the worker finishes it and its reply is dropped
        loop = self._loop
        assert loop is not None
        if deadline.kill_at > loop.time() + 0.001:
            self._abandoned[rid] = loop.call_at(deadline.kill_at, self._overran, rid, deadline)
        else:
            self._overran(rid, deadline)

    def _overran(self, rid: int, deadline: Deadline) -> None:
        self._abandoned.pop(rid, None)
        self.condemn(
            "timeout",
            f"a prediction on it overran its deadline ({deadline.timeout_s:g} s, --request-timeout)",
        )

    def condemn(self, cause: str, reason: str) -> None:
        """Kill the worker now and fail every request it holds; its supervisor replaces it."""
        if self.kill_cause is not None or not self.alive:
            return
        self.kill_cause = cause
        self.kill_reason = reason
        self.ready = False
        log.error("worker %d (pid %s): %s; killing it", self.index, self.hello.get("pid"), reason)
        self.kill()
        self._fail_pending()

    def send_ping(self, now: float) -> None:
        writer = self._ping_writer
        if writer is None or not self.alive:
            return
        self.ping_sent = now
        writer.writelines(ipc.encode(ipc.ping_request()))

    def _on_frame(self, frame: Reply) -> None:
        header = frame[0]
        rid = header.get("id", -1)
        fut = self.pending.pop(rid, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(frame)
        elif header.get("op") == "hello":
            if self._hello is not None and not self._hello.done():
                self._hello.set_result(header)
        else:
            late = self._abandoned.pop(rid, None)
            if late is not None:
                late.cancel()

    async def _watch_channel(self, channel: ipc.FrameProtocol) -> None:
        try:
            await channel.closed
            if self.proc is not None and self.kill_cause is None:
                # The socket closes a moment before the exit status is known; wait a little for it.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 2.0)
        finally:
            self._fail_pending()

    async def _read_pings(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, OSError):
            while True:
                await ipc.read_frame(reader)
                self.ping_sent = None

    def _fail_pending(self) -> None:
        self.ready = False
        if self.kill_cause is not None:
            message = f"the model worker holding this request was replaced because {self.kill_reason}"
            how = f"was killed because {self.kill_reason}"
        else:
            if isinstance(self.proc, ForkedProcess) and self.proc.code_lost:
                how = "exited (its exit code went with the template that forked it)"
            else:
                how = _describe_exit(self.proc.returncode if self.proc else None)
            message = f"the model worker {how} while handling this request; it is being restarted"
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerCrashed(message))
        for timer in self._abandoned.values():
            timer.cancel()
        self._abandoned.clear()
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(ModelNotReady(f"the model worker {how} before it started"))

    async def wait(self) -> int | None:
        assert self.proc is not None
        code = await self.proc.wait()
        await self._join_readers()
        return code

    def kill(self) -> None:
        self.ready = False
        if isinstance(self.proc, ForkedProcess):
            self.proc.kill()
        elif self.alive and self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def _join_readers(self) -> None:
        tasks = [t for t in (self._reader_task, self._ping_task) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self, grace: float = 5.0) -> None:
        self.ready = False
        if self._channel is not None and self._channel.transport is not None:
            self._channel.transport.close()
        if self._ping_writer is not None:
            self._ping_writer.close()
        if self.alive and self.proc is not None:
            try:
                self.proc.terminate()
                await asyncio.wait_for(self.proc.wait(), grace)
            except (asyncio.TimeoutError, ProcessLookupError):
                self.kill()
        if self.proc is not None:
            await self.proc.wait()
        await self._join_readers()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
