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
from modelport.errors import InvalidInput
from modelport.workers.batching import Batcher, PredictCall


class FakeWorker:
    """Doubles column "x"; refuses any batch holding a negative value; slow enough to queue."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def send(self, header: dict[str, Any], buffers: list[Any]) -> tuple[dict[str, Any], list[Any]]:
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
    async def send(header: dict[str, Any], buffers: list[Any]) -> tuple[dict[str, Any], list[Any]]:
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
    async def send(header: dict[str, Any], buffers: list[Any]) -> tuple[dict[str, Any], list[Any]]:
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
