"""The Open Inference Protocol over gRPC against a real server, from unmodified clients:
tritonclient.grpc (its InferenceServerClient, and its generated stub for typed contents),
grpc.health.v1 and server reflection."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import Server, start_server
from tests.protocols.grpc_support import (
    NUMPY,
    infer_request,
    outputs_of,
    rest_error,
    save_echo_model,
    stub,
)

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model = save_echo_model(tmp_path_factory.mktemp("echo"))
    server = start_server(model, "--name", "echo", tmp=tmp_path_factory.mktemp("echo-server"), grpc=True)
    yield server
    server.stop()


@pytest.fixture
def client(iris_server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(url=iris_server.grpc_target)
    yield c
    c.close()


def expected_iris(iris_model: Path, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(mlflow.pyfunc.load_model(str(iris_model)).predict(frame))


def iris_inputs(frame: pd.DataFrame) -> list[grpcclient.InferInput]:
    inputs = []
    for c in COLUMNS:
        inp = grpcclient.InferInput(c, [len(frame)], "FP64")
        inp.set_data_from_numpy(frame[c].to_numpy())
        inputs.append(inp)
    return inputs


def test_health_and_metadata_match_rest(
    client: grpcclient.InferenceServerClient, iris_server: Server
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    server = client.get_server_metadata(as_json=True)
    rest = httpx.get(f"{iris_server.base}/v2", timeout=10).json()
    assert (server["name"], server["version"], server["extensions"]) == (
        rest["name"],
        rest["version"],
        rest["extensions"],
    )
    meta = client.get_model_metadata("iris", as_json=True)
    rest_meta = httpx.get(f"{iris_server.base}/v2/models/iris", timeout=10).json()
    assert meta["name"] == "iris" and meta["platform"] == rest_meta["platform"]
    for kind in ("inputs", "outputs"):
        assert [(t["name"], t["datatype"], [int(d) for d in t["shape"]]) for t in meta[kind]] == [
            (t["name"], t["datatype"], t["shape"]) for t in rest_meta[kind]
        ]
    with pytest.raises(InferenceServerException, match="not served here"):
        client.get_model_metadata("nope")
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("iris")  # Triton's own RPC: not served
    assert info.value.status() == "StatusCode.UNIMPLEMENTED"


def test_infer_raw_through_tritonclient(
    client: grpcclient.InferenceServerClient, iris_model: Path, iris_frame: pd.DataFrame
) -> None:
    result = client.infer("iris", iris_inputs(iris_frame), request_id="t-1")
    response = result.get_response()
    assert response.id == "t-1" and response.model_name == "iris"
    out = response.outputs[0].name
    np.testing.assert_array_equal(result.as_numpy(out), expected_iris(iris_model, iris_frame))
    # Requested outputs: by name; an unknown one is refused with REST's message.
    result = client.infer("iris", iris_inputs(iris_frame), outputs=[grpcclient.InferRequestedOutput(out)])
    assert [o.name for o in result.get_response().outputs] == [out]
    with pytest.raises(InferenceServerException, match=r"unknown output\(s\) \['nope'\]"):
        client.infer("iris", iris_inputs(iris_frame), outputs=[grpcclient.InferRequestedOutput("nope")])


def test_infer_typed_contents_answers_typed(
    iris_server: Server, iris_model: Path, iris_frame: pd.DataFrame
) -> None:
    request = infer_request(
        "iris",
        [(c, "FP64", [len(iris_frame)], iris_frame[c].to_numpy()) for c in COLUMNS],
        request_id="typed",
    )
    response = stub(iris_server).ModelInfer(request)
    assert response.id == "typed" and not response.raw_output_contents
    (out,) = response.outputs
    assert out.datatype == "INT64" and list(out.shape) == [len(iris_frame)]
    assert out.parameters["content_type"].string_param == "np"
    assert list(out.contents.int64_contents) == expected_iris(iris_model, iris_frame).tolist()
    # binary_data (the V2 binary extension's name) asks for raw outputs, as tritonclient reads them.
    request.outputs.add(name=out.name).parameters["binary_data"].bool_param = True
    raw = stub(iris_server).ModelInfer(request)
    assert len(raw.raw_output_contents) == 1 and not raw.outputs[0].HasField("contents")
    np.testing.assert_array_equal(outputs_of(raw)[out.name], expected_iris(iris_model, iris_frame))


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", list(NUMPY))
def test_every_datatype_round_trips(echo_server: Server, datatype: str, raw: bool) -> None:
    """A model returning its input: each datatype in, the same out, typed or raw."""
    if datatype == "BYTES":
        data = np.array([b"a", "zoë".encode(), b"", b"\x00\xff", b"e", b"f"], dtype=object).reshape(2, 3)
    elif datatype == "BOOL":
        data = np.array([[True, False, True], [False, False, True]])
    else:
        data = np.arange(-1, 5).reshape(2, 3).astype(NUMPY[datatype]) if datatype[0] != "U" else np.arange(6)
        data = np.asarray(data, dtype=NUMPY[datatype]).reshape(2, 3)
    request = infer_request(
        "echo", [("x", datatype, [2, 3], data)], raw=raw, parameters={"content_type": "np"}
    )
    if datatype == "FP16" and not raw:
        with pytest.raises(grpc.RpcError) as info:
            stub(echo_server).ModelInfer(request)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (
            "FP16, which 'contents' has no field for; send it in raw_input_contents" in info.value.details()
        )
        return
    response = stub(echo_server).ModelInfer(request)
    (out,) = response.outputs
    assert (out.datatype, list(out.shape)) == (datatype, [2, 3])
    assert bool(response.raw_output_contents) is raw
    got = outputs_of(response)[out.name]
    assert got.tolist() == data.tolist()
    if raw and datatype != "BYTES":
        # tritonclient reads raw outputs only: its own decoding gives the same array.
        result = grpcclient.InferResult(response)
        np.testing.assert_array_equal(result.as_numpy(out.name), data)


def test_every_datatype_through_tritonclient(echo_server: Server) -> None:
    c = grpcclient.InferenceServerClient(url=echo_server.grpc_target)
    try:
        for datatype in NUMPY:
            data = np.arange(6).reshape(3, 2).astype(NUMPY[datatype])
            if datatype == "BYTES":
                data = np.array([str(v).encode() for v in range(6)], dtype=object).reshape(3, 2)
            inp = grpcclient.InferInput("x", [3, 2], datatype)
            inp.set_data_from_numpy(data)
            result = c.infer("echo", [inp], parameters={"content_type": "np"})
            assert result.as_numpy("output-0").tolist() == data.tolist(), datatype
    finally:
        c.close()


def test_bytes_params_and_requested_outputs(custom_server: Server, custom_model: Path) -> None:
    frame = pd.DataFrame({"name": ["ann", "zoë"], "x": [1.5, -2.0]})
    params = {"scale": 3.0, "prefix": "hi"}
    expected = mlflow.pyfunc.load_model(str(custom_model)).predict(frame, params=params)
    for raw in (True, False):
        request = infer_request(
            "greeter",
            [("name", "BYTES", [2], np.array(["ann", "zoë"], dtype=object)), ("x", "FP64", [2], frame["x"])],
            raw=raw,
            parameters=params,
            outputs=["greeting", "score"],
        )
        response = stub(custom_server).ModelInfer(request)
        out = outputs_of(response)
        assert [o.name for o in response.outputs] == ["greeting", "score"]
        assert [v.decode() for v in out["greeting"].tolist()] == expected["greeting"].tolist()
        assert out["score"].tolist() == expected["score"].tolist()
        assert response.parameters["content_type"].string_param == "pd"
    request.ClearField("outputs")
    request.outputs.add(name="score")
    assert [o.name for o in stub(custom_server).ModelInfer(request).outputs] == ["score"]


def test_stream_answers_in_order_and_survives_errors(
    client: grpcclient.InferenceServerClient, iris_server: Server, iris_model: Path, iris_frame: pd.DataFrame
) -> None:
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        full = iris_inputs(iris_frame)
        client.async_stream_infer("iris", full, request_id="s-1")
        client.async_stream_infer("iris", full[:2], request_id="s-2")  # missing columns
        client.async_stream_infer("nope", full, request_id="s-3")  # unknown model
        for i in range(4, 10):
            client.async_stream_infer("iris", full, request_id=f"s-{i}")
        got = [answers.get(timeout=30) for _ in range(9)]
    finally:
        client.stop_stream()
    expected = expected_iris(iris_model, iris_frame)
    ok = [r for r, e in got if e is None]
    assert [r.get_response().id for r in ok] == ["s-1", *(f"s-{i}" for i in range(4, 10))]  # type: ignore[attr-defined]
    for r in ok:
        np.testing.assert_array_equal(r.as_numpy("output-0"), expected)  # type: ignore[attr-defined]
    errors = [str(e) for r, e in got if e is not None]
    body = {"inputs": [{"name": c, "datatype": "FP64", "shape": [1], "data": [1.0]} for c in COLUMNS[:2]]}
    assert errors == [rest_error(iris_server, "iris", body)[1], rest_error(iris_server, "nope", body)[1]]


def test_health_service_and_reflection(iris_server: Server) -> None:
    channel = grpc.insecure_channel(iris_server.grpc_target)
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", "iris", "inference.GRPCInferenceService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == serving
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
    watch = health.Watch(health_pb2.HealthCheckRequest(service="iris"), timeout=10)
    assert next(watch).status == serving
    watch.cancel()

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService"),
    ]
    listed, described = list(reflect.ServerReflectionInfo(iter(asks), timeout=10))
    names = {s.name for s in listed.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
    from google.protobuf import descriptor_pb2

    (raw_file,) = described.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(raw_file)
    methods = {m.name for m in file.service[0].method}
    assert {"ModelInfer", "ModelStreamInfer", "ServerLive", "ModelMetadata"} <= methods
    channel.close()


def test_metrics_count_grpc_requests(
    client: grpcclient.InferenceServerClient, iris_server: Server, iris_frame: pd.DataFrame
) -> None:
    def count(status: str) -> float:
        text = httpx.get(f"{iris_server.base}/metrics", timeout=10).text
        key = f'modelport_requests_total{{model="iris",protocol="grpc",status="{status}"}}'
        return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(key)), 0.0)

    ok, bad = count("OK"), count("INVALID_ARGUMENT")
    client.infer("iris", iris_inputs(iris_frame))
    with pytest.raises(InferenceServerException):
        client.infer("iris", iris_inputs(iris_frame)[:1])
    assert count("OK") == ok + 1 and count("INVALID_ARGUMENT") == bad + 1
