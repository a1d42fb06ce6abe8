"""gRPC messages to the core's tensors and back, in-process: every datatype typed and raw,
every InferParameter kind, the raw-output policy, the error edge's status mapping."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from modelport.errors import InvalidInput, ModelNotFound, ModelNotReady, PayloadTooLarge, RequestTimeout
from modelport.inference import InferenceResponse, Tensor
from modelport.protocols.grpc_service import INTERNAL_MESSAGE, status_of
from modelport.protocols.grpc_tensors import (
    CONTENTS_FIELD,
    decode_request,
    encode_response,
    parameters,
    response_bytes,
    set_parameters,
)
from modelport.protocols.proto import inference_pb2 as pb

NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def sample(datatype: str, count: int = 6) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([f"s{i}é".encode() for i in range(count)], dtype=object)
    if datatype == "BOOL":
        return np.arange(count) % 2 == 0
    dtype = np.dtype(NUMPY[datatype])
    if dtype.kind == "f":
        return (np.arange(count) * 0.5 - 1).astype(dtype)
    info = np.iinfo(dtype)
    extremes = [int(info.min), int(info.min) + 1, 0, 1, int(info.max) - 1, int(info.max)]
    return np.array(extremes[:count], dtype=dtype)


def request_with(datatype: str, data: np.ndarray, raw: bool, shape: list[int]) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="m", id="r-1")
    inp = msg.inputs.add(name="x", datatype=datatype, shape=shape)
    if raw:
        if datatype == "BYTES":
            msg.raw_input_contents.append(b"".join(len(v).to_bytes(4, "little") + v for v in data))
        else:
            msg.raw_input_contents.append(data.tobytes())
    elif datatype in CONTENTS_FIELD:
        getattr(inp.contents, CONTENTS_FIELD[datatype]).extend(data.tolist())
    return msg


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
@pytest.mark.parametrize("datatype", [*NUMPY, "BYTES"])
def test_every_datatype_both_ways(datatype: str, raw: bool) -> None:
    data = sample(datatype)
    msg = request_with(datatype, data, raw, [2, 3])
    if datatype == "FP16" and not raw:
        return  # no typed field: see test_fp16_typed_is_refused
    request, raw_out = decode_request(msg, msg.ByteSize())
    assert raw_out is raw
    (t,) = request.inputs
    assert (t.name, t.datatype, t.shape, request.id) == ("x", datatype, [2, 3], "r-1")
    assert t.data.shape == (2, 3)
    if datatype == "BYTES":
        assert t.data.ravel().tolist() == data.tolist()
    else:
        assert t.data.dtype == data.dtype
        np.testing.assert_array_equal(t.data.ravel(), data)
    # And back: typed or raw as asked, the same values.
    response = encode_response(InferenceResponse("m", [t], id="r-1"), raw)
    assert response.id == "r-1" and response.outputs[0].shape == [2, 3]
    if raw:
        assert len(response.raw_output_contents) == 1
        assert not response.outputs[0].HasField("contents")
    else:
        back = list(getattr(response.outputs[0].contents, CONTENTS_FIELD[datatype]))
        assert back == data.tolist()


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_response_bytes_is_the_serialized_response(raw: bool) -> None:
    datatypes = [dt for dt in [*NUMPY, "BYTES"] if raw or dt != "FP16"]  # FP16 would make it raw
    outputs = [Tensor(dt, dt, [2, 3], sample(dt).reshape(2, 3), {"content_type": "np"}) for dt in datatypes]
    big = np.arange(30000, dtype=np.float32).reshape(300, 100).T  # not C-contiguous
    outputs.append(Tensor("big", "FP32", [100, 300], big))
    response = InferenceResponse("m", outputs, model_version="3", id="r", parameters={"content_type": "pd"})
    fast = pb.ModelInferResponse.FromString(response_bytes(response, raw))
    assert fast == encode_response(response, raw)
    assert len(fast.raw_output_contents) == (len(outputs) if raw else 0)
    if raw:
        assert np.frombuffer(fast.raw_output_contents[-1], np.float32).tolist() == big.ravel().tolist()


def test_fp16_typed_is_refused_and_fp16_outputs_go_raw() -> None:
    msg = request_with("FP16", sample("FP16"), False, [6])
    with pytest.raises(
        InvalidInput, match="FP16, which 'contents' has no field for; send it in raw_input_contents"
    ):
        decode_request(msg, msg.ByteSize())
    half = Tensor("h", "FP16", [2], np.array([1.5, 2.5], np.float16))
    other = Tensor("f", "FP64", [1], np.array([1.0]))
    response = encode_response(InferenceResponse("m", [half, other]), raw=False)
    assert len(response.raw_output_contents) == 2  # all raw: the spec allows no mix
    assert np.frombuffer(response.raw_output_contents[0], np.float16).tolist() == [1.5, 2.5]


def test_typed_values_that_do_not_fit_get_the_codec_message() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    with pytest.raises(InvalidInput, match="input 'x': data does not fit datatype INT8"):
        decode_request(msg, msg.ByteSize())


def test_typed_data_in_the_wrong_field_is_named() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[2]).contents.fp64_contents.extend([1.0, 2.0])
    with pytest.raises(
        InvalidInput,
        match="whose elements go in contents.fp32_contents, but its data is in contents.fp64_contents",
    ):
        decode_request(msg, msg.ByteSize())


def test_raw_and_typed_together_and_raw_count_mismatch() -> None:
    msg = request_with("FP64", np.array([1.0]), True, [1])
    msg.inputs[0].contents.fp64_contents.append(1.0)
    with pytest.raises(InvalidInput, match="has 'contents' but the request also sends raw_input_contents"):
        decode_request(msg, msg.ByteSize())
    msg = request_with("FP64", np.array([1.0]), True, [1])
    msg.raw_input_contents.append(b"")
    with pytest.raises(InvalidInput, match="1 inputs but 2 raw_input_contents"):
        decode_request(msg, msg.ByteSize())


def test_shapes_that_lie_about_their_data_are_refused_before_allocating() -> None:
    msg = request_with("FP64", np.array([1.0]), True, [1])
    del msg.inputs[0].shape[:]
    msg.inputs[0].shape.extend([1 << 20, 1 << 10])
    with pytest.raises(InvalidInput, match="shapes and data disagree"):
        decode_request(msg, msg.ByteSize())


def test_every_parameter_kind_round_trips() -> None:
    values = {"flag": True, "count": -3, "big": (1 << 64) - 1, "ratio": 0.25, "name": "zoë"}
    msg = pb.ModelInferRequest()
    set_parameters(msg.parameters, values)
    kinds = {k: v.WhichOneof("parameter_choice") for k, v in msg.parameters.items()}
    assert kinds == {
        "flag": "bool_param",
        "count": "int64_param",
        "big": "uint64_param",
        "ratio": "double_param",
        "name": "string_param",
    }
    assert parameters(pb.ModelInferRequest.FromString(msg.SerializeToString()).parameters) == values


def test_raw_outputs_when_asked_for_in_binary() -> None:
    typed = request_with("FP64", np.array([1.0]), False, [1])
    assert decode_request(typed, typed.ByteSize())[1] is False
    typed.parameters["binary_data_output"].bool_param = True
    assert decode_request(typed, typed.ByteSize())[1] is True
    typed = request_with("FP64", np.array([1.0]), False, [1])
    out = typed.outputs.add(name="y")
    out.parameters["binary_data"].bool_param = True
    request, raw = decode_request(typed, typed.ByteSize())
    assert raw is True and request.outputs == ["y"]


def test_status_codes_at_the_edge() -> None:
    assert status_of(InvalidInput("bad"), "M") == (grpc.StatusCode.INVALID_ARGUMENT, "bad")
    assert status_of(ModelNotFound("who"), "M")[0] is grpc.StatusCode.NOT_FOUND
    assert status_of(ModelNotReady("wait"), "M")[0] is grpc.StatusCode.UNAVAILABLE
    assert status_of(PayloadTooLarge("big"), "M")[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_of(RequestTimeout("late"), "M")[0] is grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_of(ValueError("secret detail"), "M") == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
