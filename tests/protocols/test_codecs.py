"""V2 tensor codecs: every datatype, JSON and binary, BYTES, content types, zero-width shapes.
The limits bodies are held to (JSON depth, decoded size, off-loop) are in tests/test_limits.py."""

from __future__ import annotations

import base64

import msgspec
import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.inference import InferenceResponse, Tensor, datatype_of
from modelport.protocols import codecs, v2


@pytest.mark.parametrize(
    ("datatype", "data", "dtype"),
    [
        ("BOOL", [True, False], np.bool_),
        ("UINT8", [0, 255], np.uint8),
        ("UINT16", [1, 2], np.uint16),
        ("UINT32", [1, 2], np.uint32),
        ("UINT64", [1, 2], np.uint64),
        ("INT8", [-1, 1], np.int8),
        ("INT16", [-1, 1], np.int16),
        ("INT32", [-1, 1], np.int32),
        ("INT64", [-1, 1], np.int64),
        ("FP16", [0.5, 1.5], np.float16),
        ("FP32", [0.5, 1.5], np.float32),
        ("FP64", [0.5, 1.5], np.float64),
    ],
)
def test_numeric_datatypes_json_and_binary(datatype: str, data: list, dtype: type) -> None:
    t = codecs.decode_json_tensor("a", datatype, [2], data, {})
    assert t.data.dtype == np.dtype(dtype) and t.data.tolist() == data
    assert datatype_of(t.data) == datatype
    raw = codecs.encode_binary_data(t.data)
    back = codecs.decode_binary_tensor("a", datatype, [2], memoryview(raw), {})
    np.testing.assert_array_equal(back.data, t.data)
    assert codecs.encode_json_data(t.data) == data


def test_nested_json_data_and_shape_checks() -> None:
    t = codecs.decode_json_tensor("a", "FP32", [2, 2], [[1, 2], [3, 4]], {})
    assert t.data.shape == (2, 2)
    with pytest.raises(InvalidInput, match="has 3 elements"):
        codecs.decode_json_tensor("a", "FP32", [2, 2], [1, 2, 3], {})
    with pytest.raises(InvalidInput, match="invalid shape"):
        codecs.decode_json_tensor("a", "FP32", [-2], [1], {})
    with pytest.raises(InvalidInput, match="non-integer"):
        codecs.decode_json_tensor("a", "INT64", [1], [1.5], {})
    with pytest.raises(InvalidInput, match="non-boolean"):
        codecs.decode_json_tensor("a", "BOOL", [1], [3], {})
    with pytest.raises(InvalidInput, match="does not fit"):
        codecs.decode_json_tensor("a", "FP64", [1], ["x"], {})


def test_bytes_json_binary_and_content_types() -> None:
    t = codecs.decode_json_tensor("s", "BYTES", [2], ["a", "zoë"], {"content_type": "str"})
    assert t.data.tolist() == ["a", "zoë"]
    b64 = codecs.decode_json_tensor(
        "b", "BYTES", [1], [base64.b64encode(b"\x00\xff").decode()], {"content_type": "base64"}
    )
    assert b64.data.tolist() == [b"\x00\xff"]
    with pytest.raises(InvalidInput, match="invalid base64"):
        codecs.decode_json_tensor("b", "BYTES", [1], ["%%%"], {"content_type": "base64"})
    raw = codecs.encode_binary_data(np.array(["a", "zoë"], dtype=object))
    back = codecs.decode_binary_tensor("s", "BYTES", [2], memoryview(raw), {"content_type": "str"})
    assert back.data.tolist() == ["a", "zoë"]
    with pytest.raises(InvalidInput, match="malformed binary BYTES"):
        codecs.decode_binary_tensor("s", "BYTES", [1], memoryview(b"\x09\x00\x00\x00ab"), {})
    assert codecs.encode_json_data(np.array([b"\xff\xfe"], dtype=object)) == [
        base64.b64encode(b"\xff\xfe").decode()
    ]


def test_binary_size_must_match_shape() -> None:
    with pytest.raises(InvalidInput, match="needs 16"):
        codecs.decode_binary_tensor("a", "FP64", [2], memoryview(b"\x00" * 8), {})


def _binary_body(header: dict, *chunks: bytes) -> tuple[bytes, str]:
    head = v2.encode_json(header)
    return head + b"".join(chunks), str(len(head))


def test_request_with_binary_extension() -> None:
    x = np.arange(6, dtype=np.float32)
    body, length = _binary_body(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
                {"name": "y", "datatype": "INT64", "shape": [1], "data": [7]},
            ],
            "outputs": [{"name": "out", "parameters": {"binary_data": True}}],
        },
        x.tobytes(),
    )
    request, want_binary = v2.decode_request(body, length)
    np.testing.assert_array_equal(request.inputs[0].data, x.reshape(2, 3))
    assert request.inputs[1].data.tolist() == [7]
    assert want_binary == {"out": True}


@pytest.mark.parametrize(
    ("length", "needle"),
    [("abc", "not an integer"), ("100000", "does not fit"), ("0", "does not fit")],
)
def test_bad_header_length(length: str, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        v2.decode_request(b'{"inputs":[]}', length)


def test_binary_sizes_must_add_up() -> None:
    header = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]
    }
    body, length = _binary_body(header, b"\x00" * 8)
    with pytest.raises(InvalidInput, match="no input claims"):
        v2.decode_request(body, length)
    body, length = _binary_body(header, b"\x00" * 2)
    with pytest.raises(InvalidInput, match="runs past"):
        v2.decode_request(body, length)


def test_response_json_and_binary() -> None:
    out = Tensor("y", "FP64", [2], np.array([1.0, 2.0]), {"content_type": "np"})
    resp = InferenceResponse(model_name="m", outputs=[out], id="7")
    body, headers = v2.encode_response(resp, {})
    assert headers == {}
    assert v2.msgspec.json.decode(body) == {
        "model_name": "m",
        "id": "7",
        "outputs": [
            {
                "name": "y",
                "datatype": "FP64",
                "shape": [2],
                "data": [1.0, 2.0],
                "parameters": {"content_type": "np"},
            }
        ],
    }
    body, headers = v2.encode_response(resp, {"*": True})
    n = int(headers["inference-header-content-length"])
    head = v2.msgspec.json.decode(body[:n])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 16
    assert np.frombuffer(body[n:], dtype=np.float64).tolist() == [1.0, 2.0]


# --- typed fast paths: JSON data decoded in C, same answers as the generic path -----------


def _raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "expected"),
    [
        ("BYTES", [2, 2], [["a", "b"], ["c", "d"]], ["a", "b", "c", "d"]),
        ("BYTES", [3], [["a"], ["b", "c"]], ["a", "b", "c"]),  # ragged: flattened, as before
        ("BYTES", [2, 1], ["a", "b"], ["a", "b"]),
        ("INT64", [2, 2], [[1, 2], [3, 4]], [1, 2, 3, 4]),
        ("INT64", [2], [1.0, 2.0], [1, 2]),  # integral floats are still integers
        ("FP32", [2], [1, 2.5], [1.0, 2.5]),
        ("BOOL", [1, 2], [[True, False]], [True, False]),
    ],
)
def test_json_data_from_raw_equals_decoded(datatype: str, shape: list, data: list, expected: list) -> None:
    fast = codecs.decode_json_tensor("a", datatype, shape, _raw(data), {})
    slow = codecs.decode_json_tensor("a", datatype, shape, data, {})
    assert fast.data.reshape(-1).tolist() == slow.data.reshape(-1).tolist() == expected
    assert fast.data.shape == slow.data.shape == tuple(shape)
    assert fast.data.dtype == slow.data.dtype


@pytest.mark.parametrize(
    ("datatype", "data", "needle"),
    [
        ("INT64", [1.5], "non-integer"),
        ("BOOL", [1], "non-boolean"),
        ("FP64", ["x"], "does not fit"),
        ("BYTES", ["a", 1], "holds int values"),
        ("BYTES", ["a", None], "holds NoneType values"),
        ("INT8", [300], "does not fit"),
        ("FP64", None, "null data"),
        ("BYTES", None, "null data"),
    ],
)
def test_json_data_from_raw_refused_like_decoded(datatype: str, data: list | None, needle: str) -> None:
    for value in (_raw(data), data):
        with pytest.raises(InvalidInput, match=needle):
            codecs.decode_json_tensor("a", datatype, [len(data or [0])], value, {})


def test_bytes_from_raw_content_types() -> None:
    b64 = base64.b64encode(b"\x00\xff").decode()
    t = codecs.decode_json_tensor("b", "BYTES", [1], _raw([b64]), {"content_type": "base64"})
    assert t.data.tolist() == [b"\x00\xff"]
    with pytest.raises(InvalidInput, match="invalid base64"):
        codecs.decode_json_tensor("b", "BYTES", [1], _raw(["%%%"]), {"content_type": "base64"})
    t = codecs.decode_json_tensor("s", "BYTES", [2], _raw(["a", "zoë"]), {"content_type": "str"})
    assert t.data.tolist() == ["a", "zoë"] and t.data.dtype == object


# --- shapes and decoded size ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [[5_000_000, 0], [1, 0], [3, 0, 2]])
def test_zero_width_tensor_with_rows_is_refused(shape: list) -> None:
    for datatype, raw in (("FP64", b""), ("BYTES", b"")):
        with pytest.raises(InvalidInput, match="rows of no elements"):
            codecs.decode_json_tensor("x", datatype, shape, [], {})
        with pytest.raises(InvalidInput, match="rows of no elements"):
            codecs.decode_binary_tensor("x", datatype, shape, memoryview(raw), {})
        with pytest.raises(InvalidInput, match="rows of no elements"):
            codecs.decoded_nbytes("x", datatype, shape)


def test_empty_tensors_without_rows_are_fine() -> None:
    assert codecs.decode_json_tensor("x", "FP64", [0], [], {}).data.shape == (0,)
    assert codecs.decode_json_tensor("x", "FP64", [0, 4], [], {}).data.shape == (0, 4)
    assert codecs.decode_binary_tensor("x", "BYTES", [0, 3], memoryview(b""), {}).data.shape == (0, 3)


def test_shape_dimensions_must_be_plain_non_negative_integers() -> None:
    for shape in ([-1], [True], [1.0], ["2"]):
        with pytest.raises(InvalidInput, match="invalid shape"):
            codecs.decoded_nbytes("x", "FP64", shape)  # type: ignore[arg-type]


def test_decoded_nbytes_counts_bytes_elements_and_itemsizes() -> None:
    assert codecs.decoded_nbytes("x", "FP64", [10, 3]) == 240
    assert codecs.decoded_nbytes("x", "INT8", [7]) == 7
    assert codecs.decoded_nbytes("x", "BYTES", [5]) == 5 * codecs.BYTES_ELEMENT_COST
    assert codecs.decoded_nbytes("x", "FP64", []) == 8  # a scalar
    with pytest.raises(InvalidInput, match="unknown datatype"):
        codecs.decoded_nbytes("x", "FP99", [1])


def test_binary_bytes_with_too_few_bytes_for_its_shape_is_refused_before_unpacking() -> None:
    with pytest.raises(InvalidInput, match="too few for the 1000 elements"):
        codecs.decode_binary_tensor("s", "BYTES", [1000], memoryview(b"\x00" * 8), {})


# --- outputs and slices ---------------------------------------------------------------------


def test_encode_json_data_strings_bytes_and_others() -> None:
    assert codecs.encode_json_data(np.array(["a", "b"], dtype=object)) == ["a", "b"]
    assert codecs.encode_json_data(np.array(["a", b"b", None, 3], dtype=object)) == ["a", "b", None, 3]
    assert codecs.encode_json_data(np.array([], dtype=object)) == []


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_large_bytes_data_decoded_in_slices_equals_one_decode(nested: bool) -> None:
    n = 3 * codecs.SLICE_ROWS + 5  # several slices and a short last one; over OFF_LOOP_BYTES
    words = [f'w{i}-é"x' for i in range(n)]
    data = [[w] for w in words] if nested else words
    raw = msgspec.Raw(msgspec.json.encode(data))
    assert len(raw) > codecs.OFF_LOOP_BYTES
    tensor = codecs.decode_json_tensor("t", "BYTES", [n, 1] if nested else [n], raw, {})
    assert tensor.data.reshape(-1).tolist() == words


def test_large_sliced_data_of_the_wrong_type_is_still_refused() -> None:
    n = 2 * codecs.SLICE_ROWS
    data = [[f"w{i:07d}"] for i in range(n)]
    data[-1] = [7]  # in the last slice only
    raw = msgspec.Raw(msgspec.json.encode(data))
    with pytest.raises(InvalidInput, match="BYTES"):
        codecs.decode_json_tensor("t", "BYTES", [n, 1], raw, {})
