"""The life of a gRPC call against a real server: client deadlines (a call whose deadline passes
while queued never reaches the model) and SIGTERM while calls are in flight (they complete)."""

from __future__ import annotations

import queue
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb

from tests.conftest import Server, start_server
from tests.protocols.grpc_support import infer_request, outputs_of, stub
from tests.workers.sleepy import save_sleepy_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sleepy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sleepy_model(tmp_path_factory.mktemp("sleepy"))


def sleepy(sleep: float, tag: str) -> pb.ModelInferRequest:
    return infer_request("model", [("sleep", "FP64", [1], [sleep]), ("tag", "BYTES", [1], [tag])])


def calls(log: Path) -> list[str]:
    """The tags of the predicts the model ran, its warm-ups left out."""
    return [t for t in log.read_text().split() if t != "warm-up"] if log.exists() else []


def wait_for(condition: Callable[[], bool], limit: float, what: str, server: Server) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {limit} s:\n{server.log()}"
        time.sleep(0.05)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_client_deadline_is_honoured_and_a_call_expired_in_the_queue_never_runs(
    sleepy_model: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    server = start_server(
        sleepy_model,
        *("--workers", "1", "--batching", "on"),
        tmp=tmp_path,
        env={"SLEEPY_LOG": str(log)},
        grpc=True,
    )
    try:
        infer = stub(server).ModelInfer
        # A deadline shorter than the predict: DEADLINE_EXCEEDED at the deadline, not after the predict.
        started = time.monotonic()
        assert code_of(lambda: infer(sleepy(2, "slow"), timeout=0.7)) is grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 1.8
        with ThreadPoolExecutor(1) as pool:
            stuck: Future[pb.ModelInferResponse] = pool.submit(infer, sleepy(2, "stuck"), timeout=60)
            wait_for(lambda: "stuck" in calls(log), 30, "the stuck predict should start", server)
            # Queued behind it in the batcher; its deadline passes before the worker is free.
            started = time.monotonic()
            assert (
                code_of(lambda: infer(sleepy(0, "queued"), timeout=0.5)) is grpc.StatusCode.DEADLINE_EXCEEDED
            )
            assert time.monotonic() - started < 1.5
            assert outputs_of(stuck.result())["slept"].tolist() == [2.0]
        after = infer(sleepy(0, "after"), timeout=60)
        assert outputs_of(after)["slept"].tolist() == [0.0]
        assert calls(log) == ["slow", "stuck", "after"]  # "queued" never reached the model
    finally:
        server.stop()


def test_sigterm_lets_calls_in_flight_complete(sleepy_model: Path, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    server = start_server(
        sleepy_model, *("--workers", "2"), tmp=tmp_path, env={"SLEEPY_LOG": str(log)}, grpc=True
    )
    try:
        infer = stub(server).ModelInfer
        channel = grpc.insecure_channel(server.grpc_target)
        # Open and idle when SIGTERM comes: a health Watch and a stream; neither may hold the exit.
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        streamed: queue.Queue[bytes] = queue.Queue()
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")(
            iter(streamed.get, b"")
        )
        # The stream's request first, and running: one only in flight to the server when SIGTERM
        # comes was never received, and the stream would rightly end with no answer.
        streamed.put(sleepy(1.5, "s0").SerializeToString())
        wait_for(lambda: "s0" in calls(log), 30, "the streamed predict should start", server)
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(infer, sleepy(1.5, f"c{i}"), timeout=60) for i in range(4)]
            wait_for(lambda: len(calls(log)) >= 2, 30, "two predicts should start", server)
            server.proc.send_signal(signal.SIGTERM)
            termed = time.monotonic()
            results = [a.result() for a in answers]  # raises if any call failed
            # The stream answers what it received, then ends without an error.
            (answer,) = [pb.ModelStreamInferResponse.FromString(m) for m in stream]
        assert answer.error_message == "" and outputs_of(answer.infer_response)["slept"].tolist() == [1.5]
        assert [outputs_of(r)["slept"].tolist() for r in results] == [[1.5]] * 4
        assert sorted(calls(log)) == ["c0", "c1", "c2", "c3", "s0"]
        assert [m.status for m in watch] == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert server.proc.wait(30) == 0
        assert time.monotonic() - termed < 15  # well inside --graceful-timeout (30 s)
        streamed.put(b"")
        channel.close()
        # Gone: a new call is refused, not hung.
        assert code_of(lambda: infer(sleepy(0, "late"), timeout=5)) is grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()


def test_sigterm_with_idle_streams_exits_at_once(iris_model: Path, tmp_path: Path) -> None:
    """Open streams with nothing in flight (one just begun) do not hold the exit for the grace period."""
    server = start_server(iris_model, tmp=tmp_path, grpc=True)
    try:
        client = grpcclient.InferenceServerClient(server.grpc_target)
        assert client.is_model_ready("iris")
        client.start_stream(callback=lambda result, error: None)
        channel = grpc.insecure_channel(server.grpc_target)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="iris"))
        termed = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert time.monotonic() - termed < 5, server.log()  # --graceful-timeout is 30 s
        client.stop_stream()
        client.close()
        watch.cancel()
        channel.close()
    finally:
        server.stop()
