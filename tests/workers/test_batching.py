"""Adaptive batching: merging, splitting, poisoned batches; and end to end under concurrency."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from modelport._runtime.modelport_worker.tensors import pack_array, unpack_array
from modelport.errors import InvalidInput, ModelNotReady, RequestTimeout
from modelport.inference import Deadline, earliest
from modelport.workers.batching import Batcher, PredictCall


class FakeWorker:
    """Doubles column "x"; refuses any batch holding a negative value; slow enough to queue."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def send(
        self, header: dict[str, Any], buffers: list[Any], deadline: Any = None
    ) -> tuple[dict[str, Any], list[Any]]:
        x = unpack_array(header["inputs"][0], buffers)
        self.calls.append(len(x))
        await asyncio.sleep(0.01)
        if (x < 0).any():
            raise InvalidInput("negative input")
        out: list[Any] = []
        return {"kind": "ndarray", "outputs": [pack_array("", x * 2, out)]}, out


def call(values: list[float]) -> PredictCall:
    arr = np.asarray(values, dtype=np.float64)
    return PredictCall([("x", arr)], "frame", None, len(arr))


async def _run(batcher: Batcher, calls: list[PredictCall]) -> list[Any]:
    return await asyncio.gather(*(batcher.submit(c) for c in calls), return_exceptions=True)


def test_concurrent_calls_are_merged_and_split_back() -> None:
    async def main() -> tuple[list[Any], list[int]]:
        worker = FakeWorker()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=0.0)
        results = await _run(batcher, [call([i, i + 0.5]) for i in range(10)])
        await batcher.stop()
        return results, worker.calls

    results, calls = asyncio.run(main())
    for i, r in enumerate(results):
        assert r.outputs[0][1].tolist() == [2 * i, 2 * i + 1]
    assert sum(calls) == 20 and len(calls) < 10  # fewer model calls than requests


def test_max_size_bounds_a_batch() -> None:
    async def main() -> list[int]:
        worker = FakeWorker()
        batcher = Batcher(worker.send, max_size=4, max_wait_s=0.0)
        await _run(batcher, [call([1.0, 2.0]) for _ in range(8)])
        await batcher.stop()
        return worker.calls

    assert max(asyncio.run(main())) <= 4


def test_one_bad_request_does_not_spoil_the_others() -> None:
    async def main() -> list[Any]:
        worker = FakeWorker()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=0.0)
        results = await _run(batcher, [call([1.0]), call([2.0]), call([-1.0]), call([3.0])])
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert isinstance(results[2], InvalidInput)
    assert [r.outputs[0][1].tolist() for i, r in enumerate(results) if i != 2] == [[2.0], [4.0], [6.0]]


def test_outputs_that_do_not_follow_rows_are_rerun_alone() -> None:
    async def send(
        header: dict[str, Any], buffers: list[Any], deadline: Any = None
    ) -> tuple[dict[str, Any], list[Any]]:
        x = unpack_array(header["inputs"][0], buffers)
        await asyncio.sleep(0.01)
        out: list[Any] = []
        return {"kind": "ndarray", "outputs": [pack_array("", np.asarray([x.sum()]), out)]}, out

    async def main() -> list[Any]:
        batcher = Batcher(send, max_size=64, max_wait_s=0.0)
        results = await _run(batcher, [call([1.0, 2.0]), call([3.0]), call([4.0, 5.0])])
        await batcher.stop()
        return results

    assert [r.outputs[0][1].tolist() for r in asyncio.run(main())] == [[3.0], [3.0], [9.0]]


def test_scalars_skip_batching_and_unexpected_errors_do_not_stop_the_dispatcher() -> None:
    async def send(
        header: dict[str, Any], buffers: list[Any], deadline: Any = None
    ) -> tuple[dict[str, Any], list[Any]]:
        x = unpack_array(header["inputs"][0], buffers)
        await asyncio.sleep(0.01)
        if (x == 13).any():
            raise RuntimeError("unexpected")
        out: list[Any] = []
        return {"kind": "ndarray", "outputs": [pack_array("", x * 2, out)]}, out

    async def main() -> list[Any]:
        batcher = Batcher(send, max_size=64, max_wait_s=0.0)
        scalar = PredictCall([("x", np.float64(2.0) * np.ones(()))], "single", None, 1)
        first = await _run(batcher, [scalar, call([13.0]), call([1.0])])
        second = await asyncio.wait_for(_run(batcher, [call([2.0]), call([3.0])]), 5)
        await batcher.stop()
        return [*first, *second]

    results = asyncio.run(main())
    assert results[0].outputs[0][1].tolist() == 4.0
    assert isinstance(results[1], RuntimeError)
    assert [r.outputs[0][1].tolist() for r in results[3:]] == [[4.0], [6.0]]


class GatedWorker:
    """Answers only when its gate opens; records the rows and deadline of every model call."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[tuple[list[float], Deadline | None]] = []

    async def send(
        self, header: dict[str, Any], buffers: list[Any], deadline: Deadline | None = None
    ) -> tuple[dict[str, Any], list[Any]]:
        x = unpack_array(header["inputs"][0], buffers)
        self.calls.append((x.tolist(), deadline))
        await self.gate.wait()
        out: list[Any] = []
        return {"kind": "ndarray", "outputs": [pack_array("", x * 2, out)]}, out


class FakeCapacity:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.event.set()

    @property
    def ready(self) -> bool:
        return self.event.is_set()

    async def wait_ready(self) -> None:
        await self.event.wait()


def timed_call(values: list[float], after: float) -> PredictCall:
    """A call answered 504 ``after`` seconds from now: --request-timeout ``after``."""
    now = asyncio.get_running_loop().time()
    c = call(values)
    c.deadline = Deadline(now + after, now + after, after)
    return c


def test_a_call_whose_deadline_passes_while_queued_is_answered_504_and_never_sent() -> None:
    async def main() -> tuple[Any, Any, Any, list[Any], float]:
        worker = GatedWorker()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=0.0)
        busy = asyncio.ensure_future(batcher.submit(timed_call([1.0], 60)))
        await asyncio.sleep(0.02)  # the dispatcher holds it: later calls queue
        started = asyncio.get_running_loop().time()
        late = asyncio.ensure_future(batcher.submit(timed_call([2.0], 0.1)))
        kept = asyncio.ensure_future(batcher.submit(timed_call([3.0], 60)))
        late_result = await asyncio.gather(late, return_exceptions=True)
        waited = asyncio.get_running_loop().time() - started
        worker.gate.set()
        results = await asyncio.gather(busy, kept)
        await batcher.stop()
        return late_result[0], results[0], results[1], worker.calls, waited

    late, busy, kept, calls, waited = asyncio.run(main())
    assert isinstance(late, RequestTimeout)
    assert "did not finish within 0.1 s (--request-timeout)" in late.message
    assert "waiting for a worker" in late.message
    assert waited < 1.0  # answered at its deadline, not when the dispatcher got free
    assert busy.outputs[0][1].tolist() == [2.0] and kept.outputs[0][1].tolist() == [6.0]
    assert [rows for rows, _ in calls] == [[1.0], [3.0]]  # the expired call never reached a worker


def test_a_merged_call_carries_the_earliest_deadline_of_its_members() -> None:
    async def main() -> tuple[list[Any], list[Deadline]]:
        worker = GatedWorker()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(timed_call([0.0], 60)))
        await asyncio.sleep(0.02)
        members = [timed_call([1.0], 50), timed_call([2.0], 20), timed_call([3.0], 40)]
        rest = [asyncio.ensure_future(batcher.submit(c)) for c in members]
        await asyncio.sleep(0.02)
        worker.gate.set()
        await asyncio.gather(first, *rest)
        await batcher.stop()
        return worker.calls, [c.deadline for c in members]  # type: ignore[misc]

    calls, deadlines = asyncio.run(main())
    assert [rows for rows, _ in calls] == [[0.0], [1.0, 2.0, 3.0]]
    merged = calls[1][1]
    assert merged is not None and merged.at == deadlines[1].at and merged.kill_at == deadlines[1].kill_at


def test_earliest_takes_the_answer_and_kill_times_apart() -> None:
    client = Deadline(10.0, None, None)  # a client's deadline and no server limit
    server = Deadline(30.0, 30.0, 20.0)
    merged = earliest([None, server, client])
    assert merged is not None and (merged.at, merged.kill_at, merged.timeout_s) == (10.0, 30.0, 20.0)
    assert "client's deadline" in merged.error().message
    assert earliest([None, None]) is None and earliest([server]) is server
    assert "within 20 s (--request-timeout)" in server.error().message


def test_queued_calls_wait_for_a_worker_to_come_back_until_their_deadline() -> None:
    async def main() -> tuple[Any, Any, Any, Any, Any, list[Any]]:
        worker = GatedWorker()
        capacity = FakeCapacity()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=0.0, capacity=capacity)
        busy = asyncio.ensure_future(batcher.submit(timed_call([1.0], 60)))
        await asyncio.sleep(0.02)
        patient = asyncio.ensure_future(batcher.submit(timed_call([2.0], 60)))
        hasty = asyncio.ensure_future(batcher.submit(timed_call([3.0], 0.1)))
        unbounded = asyncio.ensure_future(batcher.submit(call([5.0])))  # --request-timeout 0
        await asyncio.sleep(0.02)
        capacity.event.clear()  # the worker is being replaced
        worker.gate.set()
        await busy
        refused = await asyncio.gather(batcher.submit(timed_call([4.0], 60)), return_exceptions=True)
        late = await asyncio.gather(hasty, return_exceptions=True)
        gone = await asyncio.gather(unbounded, return_exceptions=True)
        await asyncio.sleep(0.05)
        sent_while_down = list(worker.calls)
        capacity.event.set()
        done = await asyncio.wait_for(patient, 5)
        await batcher.stop()
        return refused[0], late[0], gone[0], done, sent_while_down, worker.calls

    refused, late, gone, done, sent_while_down, calls = asyncio.run(main())
    assert isinstance(refused, ModelNotReady)  # new work is refused while no worker can take it
    assert isinstance(late, RequestTimeout)
    assert isinstance(gone, ModelNotReady)  # no deadline to wait until: answered 503 at once
    assert [rows for rows, _ in sent_while_down] == [[1.0]]
    assert done.outputs[0][1].tolist() == [4.0]
    assert [rows for rows, _ in calls] == [[1.0], [2.0]]


@pytest.mark.slow
def test_concurrent_http_requests_each_get_their_own_answer(iris_server, iris_model: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    frames = [
        pd.DataFrame(
            rng.uniform(0, 8, (int(rng.integers(1, 5)), 4)),
            columns=["sepal_length", "sepal_width", "petal_length", "petal_width"],
        )
        for _ in range(64)
    ]
    model = mlflow.pyfunc.load_model(str(iris_model))

    def one(frame: pd.DataFrame) -> list[int]:
        inputs = [
            {"name": c, "datatype": "FP64", "shape": [len(frame)], "data": frame[c].tolist()}
            for c in frame.columns
        ]
        resp = httpx.post(f"{iris_server.base}/v2/models/iris/infer", json={"inputs": inputs}, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()["outputs"][0]["data"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, frames))
    for frame, got in zip(frames, answers):
        assert got == np.asarray(model.predict(frame)).tolist()


class CountingWorker(FakeWorker):
    """Also records how many model calls were in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most = 0

    async def send(
        self, header: dict[str, Any], buffers: list[Any], deadline: Any = None
    ) -> tuple[dict[str, Any], list[Any]]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await super().send(header, buffers, deadline)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("dispatchers", [1, 2])
def test_a_lone_call_skips_the_queue_and_slots_bound_the_calls_in_flight(dispatchers: int) -> None:
    async def main() -> tuple[CountingWorker, list[Any], int]:
        worker = CountingWorker()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=0.0, dispatchers=dispatchers)
        lone = asyncio.create_task(batcher.submit(call([1.0])))
        await asyncio.sleep(0)  # the lone call is in the worker before any dispatcher ran
        queued_while_lone = len(batcher.queue)
        started = worker.in_flight
        await lone
        results = await _run(batcher, [call([float(i)]) for i in range(20)])
        await batcher.stop()
        return worker, results, queued_while_lone + 10 * (started - 1)

    worker, results, queued = asyncio.run(main())
    assert queued == 0  # sent at once, not through the queue
    assert [r.outputs[0][1].tolist() for r in results] == [[2.0 * i] for i in range(20)]
    assert worker.most <= dispatchers  # the inline path takes a dispatcher's slot
    assert len(worker.calls) < 21  # and concurrent calls still merge


def test_a_batch_waits_only_while_requests_keep_arriving() -> None:
    """With a long --max-batch-wait-ms, calls arriving one per loop iteration join the batch that
    is waiting; once none arrive it goes at once, not when the wait is up."""

    async def main() -> tuple[list[int], float]:
        worker = FakeWorker()
        loop = asyncio.get_running_loop()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=30.0)
        # Two calls queued behind a busy worker make the next dispatch a batch that may wait.
        first = asyncio.ensure_future(batcher.submit(call([0.0])))
        await asyncio.sleep(0)
        pending = [asyncio.ensure_future(batcher.submit(call([float(i)]))) for i in (1, 2)]
        await first
        started = loop.time()
        for i in range(3, 8):  # a trickle: one new call per event-loop iteration
            pending.append(asyncio.ensure_future(batcher.submit(call([float(i)]))))
            await asyncio.sleep(0)
        results = await asyncio.gather(*pending)
        took = loop.time() - started
        await batcher.stop()
        assert [r.outputs[0][1].tolist() for r in results] == [[2.0 * i] for i in range(1, 8)]
        return worker.calls, took

    calls, took = asyncio.run(main())
    assert calls[0] == 1 and calls[1] == 7  # the trickle joined the waiting batch
    assert took < 10  # and it did not wait out the 30 s


class QuickWorker(FakeWorker):
    """A worker faster than the single-threaded front that feeds it, whose answers the front
    must also find time to read (``front``): batches cannot form by queueing alone."""

    def __init__(self) -> None:
        super().__init__()
        self.front = asyncio.Lock()

    async def send(
        self, header: dict[str, Any], buffers: list[Any], deadline: Any = None
    ) -> tuple[dict[str, Any], list[Any]]:
        x = unpack_array(header["inputs"][0], buffers)
        self.calls.append(len(x))
        await asyncio.sleep(0.001)
        async with self.front:
            await asyncio.sleep(0.0002)
        out: list[Any] = []
        return {"kind": "ndarray", "outputs": [pack_array("", x * 2, out)]}, out


async def _clients(worker: QuickWorker, batcher: Batcher, clients: int, each: int) -> list[Any]:
    """``clients`` closed-loop clients behind the front, which takes 2 ms to read each request:
    requests reach the batcher one at a time, as gRPC calls do."""

    async def client(c: int) -> list[Any]:
        answers = []
        for i in range(each):
            async with worker.front:
                await asyncio.sleep(0.002)
            answers.append(await batcher.submit(call([float(c * 1000 + i)])))
        return answers

    return await asyncio.gather(*(client(c) for c in range(clients)))


def test_requests_from_concurrent_clients_that_arrive_one_at_a_time_are_batched() -> None:
    """Four clients whose requests the front hands over one by one, to a worker faster than the
    front: the batches hold all four, not whatever queued while the worker was busy."""

    async def main() -> tuple[list[Any], list[int]]:
        worker = QuickWorker()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=1.0)
        answers = await _clients(worker, batcher, clients=4, each=25)
        await batcher.stop()
        return answers, worker.calls

    answers, calls = asyncio.run(main())
    for c, mine in enumerate(answers):
        assert [r.outputs[0][1].tolist() for r in mine] == [[2.0 * (c * 1000 + i)] for i in range(25)]
    assert sum(calls) == 100
    # Lingering, nearly every call holds all four (26 calls); sending a lone request at once
    # when the worker was free gave calls of 1 and 3 in turn (50 calls).
    assert len(calls) <= 35, calls
    assert max(calls) <= 4  # never more than the clients there are: nobody waits for a fifth


def test_a_lone_client_is_never_held_back_even_after_a_crowd() -> None:
    """After four concurrent clients, one client alone: its requests go at once, not after the
    (long) --max-batch-wait-ms waiting for clients that left."""

    async def main() -> tuple[list[int], float]:
        worker = QuickWorker()
        loop = asyncio.get_running_loop()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=5.0)
        await _clients(worker, batcher, clients=4, each=10)
        before = len(worker.calls)
        started = loop.time()
        await _clients(worker, batcher, clients=1, each=20)
        took = loop.time() - started
        await batcher.stop()
        return worker.calls[before:], took

    calls, took = asyncio.run(main())
    assert calls == [1] * 20
    assert took < 4.0  # 20 x 3.2 ms of work; one wait of 5 s would show


def test_calls_in_a_dispatched_batch_are_answered_when_the_batcher_stops() -> None:
    """SIGTERM's end: calls a dispatcher took off the queue get 503, none is left waiting."""

    class SlowWorker(FakeWorker):
        def __init__(self) -> None:
            super().__init__()
            self.sent: list[int] = []

        async def send(self, header: dict[str, Any], buffers: list[Any], deadline: Any = None) -> Any:
            self.sent.append(len(unpack_array(header["inputs"][0], buffers)))
            await asyncio.sleep(0.3)
            return await super().send(header, buffers, deadline)

    async def main() -> list[Any]:
        worker = SlowWorker()
        batcher = Batcher(worker.send, max_size=64, max_wait_s=0.0)
        first = asyncio.ensure_future(batcher.submit(call([1.0])))
        await asyncio.sleep(0)  # in the worker
        queued = [asyncio.ensure_future(batcher.submit(call([float(i)]))) for i in (2, 3)]
        await first
        await asyncio.sleep(0.05)  # the dispatcher sent the two in one batch
        assert not batcher.queue and worker.sent == [1, 2]
        await batcher.stop()
        return await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), 5)

    results = asyncio.run(main())
    assert [type(r) for r in results] == [ModelNotReady, ModelNotReady], results
