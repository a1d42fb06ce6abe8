"""Bad input over gRPC: the status code its mistake maps to, and the very message REST gives for
the same mistake; never INTERNAL for a client's mistake, never a hang (every call has a deadline)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb

from tests.conftest import Server, free_port, start_server
from tests.protocols.grpc_support import grpc_error, infer_request, rest_error, save_echo_model, stub

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def iris_columns(**override: tuple[str, list[int], Any]) -> list[tuple[str, str, list[int], Any]]:
    """The four iris columns of one row, some replaced by (datatype, shape, data)."""
    out = []
    for c in COLUMNS:
        datatype, shape, data = override.get(c, ("FP64", [1], [5.0]))
        out.append((c, datatype, shape, data))
    return out


def rest_json(inputs: list[tuple[str, str, list[int], Any]], **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "data": np.asarray(v).ravel().tolist()}
            for n, d, s, v in inputs
        ],
        **extra,
    }


def same_as_rest(
    server: Server,
    model: str,
    request: pb.ModelInferRequest,
    rest: dict[str, Any] | bytes,
    headers: Any = None,
) -> str:
    """gRPC answers INVALID_ARGUMENT and REST 400, with one message; return it."""
    code, message = grpc_error(stub(server).ModelInfer, request, timeout=30)
    status, rest_message = rest_error(server, model, rest, headers)
    assert (code, status) == (INVALID, 400), (message, rest_message)
    assert message == rest_message
    return message


def test_raw_contents_whose_size_does_not_match_the_shape(iris_server: Server) -> None:
    inputs = iris_columns(sepal_length=("FP64", [2], [5.0]))  # 8 bytes for a shape of 2 elements
    request = infer_request("iris", inputs, raw=True)
    # The REST twin: the binary tensor extension, the same 8 bytes for the same shape.
    head = {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": 8}}
            for n, d, s, _ in inputs
        ]
    }
    header = json.dumps(head).encode()
    body = header + b"".join(np.asarray(v, np.float64).tobytes() for _, _, _, v in inputs)
    message = same_as_rest(
        iris_server, "iris", request, body, {"inference-header-content-length": str(len(header))}
    )
    assert message == "input 'sepal_length' has 8 bytes of binary data but shape [2] of FP64 needs 16"


def test_both_contents_and_raw_contents(iris_server: Server) -> None:
    request = infer_request("iris", iris_columns(), raw=True)
    request.inputs[1].contents.fp64_contents.append(5.0)
    code, message = grpc_error(stub(iris_server).ModelInfer, request, timeout=30)
    assert code is INVALID
    assert message == (
        "input 'sepal_width' has 'contents' but the request also sends raw_input_contents; "
        "send every input's data one way, all raw or all in 'contents'"
    )
    request = infer_request("iris", iris_columns(), raw=True)
    del request.raw_input_contents[-1]
    code, message = grpc_error(stub(iris_server).ModelInfer, request, timeout=30)
    assert code is INVALID and "4 inputs but 3 raw_input_contents" in message


@pytest.mark.parametrize("datatype", ["FP99", "BF16"])
def test_unknown_datatype(iris_server: Server, datatype: str) -> None:
    request = infer_request("iris", iris_columns())
    request.inputs[0].datatype = datatype
    rest = rest_json(iris_columns())
    rest["inputs"][0]["datatype"] = datatype
    message = same_as_rest(iris_server, "iris", request, rest)
    assert f"unknown datatype '{datatype}'" in message


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_missing_inputs(iris_server: Server, raw: bool) -> None:
    inputs = iris_columns()[:2]
    message = same_as_rest(iris_server, "iris", infer_request("iris", inputs, raw=raw), rest_json(inputs))
    assert "missing required input column(s) 'petal_length', 'petal_width'" in message


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_wrong_types_against_the_signature(iris_server: Server, custom_server: Server, raw: bool) -> None:
    inputs = iris_columns(sepal_length=("BYTES", [1], ["5"]))
    message = same_as_rest(iris_server, "iris", infer_request("iris", inputs, raw=raw), rest_json(inputs))
    assert "input column 'sepal_length' has datatype BYTES but the signature wants double" in message
    greeter = [("name", "FP64", [1], [1.0]), ("x", "FP64", [1], [1.0])]
    message = same_as_rest(
        custom_server, "greeter", infer_request("greeter", greeter, raw=raw), rest_json(greeter)
    )
    assert "input column 'name' has datatype FP64 but the signature wants string" in message


def test_typed_contents_that_disagree_with_the_shape_or_datatype(iris_server: Server) -> None:
    inputs = iris_columns(sepal_length=("FP64", [3], [5.0, 6.0]))
    message = same_as_rest(iris_server, "iris", infer_request("iris", inputs), rest_json(inputs))
    assert message == "input 'sepal_length' has 2 elements but its shape [3] needs 3"
    # 300 is no INT8: the typed field (int32) holds it, the datatype does not.
    request = infer_request("iris", iris_columns())
    request.inputs[0].datatype = "INT8"
    request.inputs[0].ClearField("contents")
    request.inputs[0].contents.int_contents.append(300)
    rest = rest_json(iris_columns())
    rest["inputs"][0].update(datatype="INT8", data=[300])
    message = same_as_rest(iris_server, "iris", request, rest)
    assert message.startswith("input 'sepal_length': data does not fit datatype INT8")
    # Data in another datatype's field: gRPC only, so no REST twin to compare with.
    request = infer_request("iris", iris_columns())
    request.inputs[0].datatype = "FP32"
    code, message = grpc_error(stub(iris_server).ModelInfer, request, timeout=30)
    assert code is INVALID
    assert message == (
        "input 'sepal_length' has datatype FP32, whose elements go in contents.fp32_contents, "
        "but its data is in contents.fp64_contents"
    )


def test_request_shapes_names_and_encoding(iris_server: Server) -> None:
    empty = same_as_rest(iris_server, "iris", pb.ModelInferRequest(model_name="iris"), {"inputs": []})
    assert empty == "invalid inference request: 'inputs' is empty"
    twice = iris_columns() + iris_columns()[:1]
    assert "given more than once" in same_as_rest(
        iris_server, "iris", infer_request("iris", twice), rest_json(twice)
    )
    negative = iris_columns(sepal_length=("FP64", [-1], []))
    assert "invalid shape [-1]" in same_as_rest(
        iris_server, "iris", infer_request("iris", negative), rest_json(negative)
    )
    # Its message names the body's size, which differs by protocol: compare the rest.
    lying = iris_columns(sepal_length=("FP64", [1 << 20, 1 << 10], []))
    code, message = grpc_error(
        stub(iris_server).ModelInfer, infer_request("iris", lying, raw=True), timeout=30
    )
    status, rest_message = rest_error(iris_server, "iris", rest_json(lying))
    assert (code, status) == (INVALID, 400)
    assert message.startswith("the request's shapes need 8589934616 bytes decoded, more than its body of")
    assert message.split("can hold")[1] == rest_message.split("can hold")[1]
    channel = grpc.insecure_channel(iris_server.grpc_target)
    code, message = grpc_error(
        channel.unary_unary("/inference.GRPCInferenceService/ModelInfer"), b"\xff\xff\xff", timeout=30
    )
    assert code is INVALID and message.startswith("the request is not a valid ModelInferRequest message")
    channel.close()


def test_unknown_model_is_not_found(iris_server: Server) -> None:
    request = infer_request("nope", iris_columns())
    code, message = grpc_error(stub(iris_server).ModelInfer, request, timeout=30)
    status, rest_message = rest_error(iris_server, "nope", rest_json(iris_columns()))
    assert (code, status) == (grpc.StatusCode.NOT_FOUND, 404) and message == rest_message
    assert message == "model 'nope' is not served here (models: 'iris')"
    calls = stub(iris_server)
    assert (
        grpc_error(calls.ModelMetadata, pb.ModelMetadataRequest(name="nope"), timeout=30)[0].name
        == "NOT_FOUND"
    )
    assert grpc_error(calls.ModelReady, pb.ModelReadyRequest(name="nope"), timeout=30)[0].name == "NOT_FOUND"
    versioned = infer_request("iris", iris_columns())
    versioned.model_version = "7"
    code, message = grpc_error(calls.ModelInfer, versioned, timeout=30)
    assert code is grpc.StatusCode.NOT_FOUND and message.startswith(
        "model 'iris' version '7' is not served here"
    )


@pytest.fixture(scope="module")
def small_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = save_echo_model(tmp_path_factory.mktemp("echo-small"))
    server = start_server(
        model, "--name", "echo", "--max-body-bytes", "4096", tmp=tmp_path_factory.mktemp("small"), grpc=True
    )
    yield server
    server.stop()


def test_messages_over_max_body_bytes_are_resource_exhausted(small_echo: Server) -> None:
    params = {"content_type": "np"}
    ok = infer_request("echo", [("x", "INT32", [100], np.ones(100))], parameters=params)
    assert stub(small_echo).ModelInfer(ok, timeout=30).outputs[0].datatype == "INT32"
    big = infer_request("echo", [("x", "FP64", [600], np.ones(600))], raw=True, parameters=params)
    code, message = grpc_error(stub(small_echo).ModelInfer, big, timeout=30)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, message
    # 2,000 one-byte varints in (about 2 KB), asked back raw: 8 KB out, over the limit.
    amplified = infer_request(
        "echo", [("x", "INT32", [2000], np.ones(2000))], parameters={**params, "binary_data_output": True}
    )
    assert amplified.ByteSize() < 4096
    code, message = grpc_error(stub(small_echo).ModelInfer, amplified, timeout=30)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "is over the message size limit of 4096 bytes (--max-body-bytes)" in message
    assert stub(small_echo).ModelInfer(ok, timeout=30).outputs  # the server is fine


def test_model_not_ready_is_unavailable_and_health_follows_readiness(
    iris_model: Path, tmp_path: Path
) -> None:
    server = start_server(iris_model, tmp=tmp_path, grpc=True, expect_ready=False)
    try:
        channel = grpc.insecure_channel(server.grpc_target)
        grpc.channel_ready_future(channel).result(timeout=60)
        infer = stub(server)
        health = health_pb2_grpc.HealthStub(channel)
        request = infer_request("iris", iris_columns())
        code, message = grpc_error(infer.ModelInfer, request, timeout=30)
        status, rest_message = rest_error(server, "iris", rest_json(iris_columns()))
        assert (code, status) == (grpc.StatusCode.UNAVAILABLE, 503), message
        assert message == rest_message
        assert not infer.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert not infer.ModelReady(pb.ModelReadyRequest(name="iris"), timeout=10).ready
        for service in ("", "iris"):
            check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        deadline = time.monotonic() + 120
        while not infer.ServerReady(pb.ServerReadyRequest(), timeout=10).ready:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        assert httpx.get(f"{server.base}/v2/health/ready", timeout=10).status_code == 200
        for service in ("", "iris"):
            check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.SERVING
        assert infer.ModelInfer(request, timeout=30).outputs
        channel.close()
    finally:
        server.stop()


def test_grpc_port_taken_fails_the_start_with_a_clear_error(iris_model: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "modelport", "serve", str(iris_model), "--host", "127.0.0.1"]
            + ["--http-port", str(free_port()), "--grpc-port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "MODELPORT_CACHE_DIR": str(tmp_path / "cache")},
        )
    assert proc.returncode == 2, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port} (gRPC)" in proc.stderr
    assert "Traceback" not in proc.stderr
