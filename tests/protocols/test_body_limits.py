"""Malformed or hostile bodies at the adapters: V2 infer, V1 predict, MLflow /invocations.

Each is refused with ``InvalidInput`` (a 400 at the edge) naming the problem, before the
data is decoded or anything is allocated for it. The same requests against a real
server are in test_hostile_bodies.py.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import msgspec
import numpy as np
import pytest

from modelport import scoring
from modelport.errors import InvalidInput
from modelport.mlmodel import read_model_spec
from modelport.protocols import codecs, v2

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DEEP = 100_000


def encode(value: object) -> bytes:
    return msgspec.json.encode(value)


def column_inputs(shape: list[int], data: list) -> list[dict]:
    return [{"name": c, "datatype": "FP64", "shape": shape, "data": data} for c in COLUMNS]


# --- V2 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP,
        b'{"inputs":[{"name":"a","datatype":"FP64","shape":[1],"data":' + b"[" * DEEP + b"}]}",
        b'{"inputs":[{"name":"a","datatype":"FP64","shape":[1],"data":'
        + b"[" * DEEP
        + b"1"
        + b"]" * DEEP
        + b"}]}",
        b'{"parameters":{"p":' + b"[" * 500 + b"]" * 500 + b'},"inputs":[]}',
    ],
    ids=["top-level", "data-unterminated", "data-balanced", "parameters-500"],
)
def test_v2_deep_nesting_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="nested .* levels deep"):
        v2.decode_request(body, None)


def test_v2_deep_nesting_in_the_json_part_of_a_binary_request() -> None:
    head = b'{"inputs":[{"name":"a","datatype":"FP64","shape":[1],"parameters":' + b"[" * DEEP
    with pytest.raises(InvalidInput, match="nested"):
        v2.decode_request(head + b"\x00" * 8, str(len(head)))


def test_v2_nesting_as_deep_as_a_real_tensor_is_fine() -> None:
    shape = [1] * 60
    data: object = [2.5]
    for _ in range(59):
        data = [data]
    request, _ = v2.decode_request(
        encode({"inputs": [{"name": "t", "datatype": "FP64", "shape": shape, "data": data}]}), None
    )
    assert request.inputs[0].data.shape == tuple(shape)


def test_v2_duplicate_input_names_are_refused_by_name() -> None:
    inputs = [
        {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]},
        {"name": "y", "datatype": "FP64", "shape": [1], "data": [2.0]},
        {"name": "x", "datatype": "FP64", "shape": [1], "data": [3.0]},
    ]
    with pytest.raises(InvalidInput, match="input 'x' is given more than once"):
        v2.decode_request(encode({"inputs": inputs}), None)


def test_v2_zero_width_bomb_is_refused_without_allocating() -> None:
    body = encode({"inputs": column_inputs([5_000_000, 0], [])})
    assert len(body) < 400  # the reported request was 334 bytes
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match=r"shape \[5000000, 0\]: 5000000 rows of no elements"):
            v2.decode_request(body, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    ("datatype", "shape"),
    [("FP64", [10**9]), ("BYTES", [50_000_000]), ("UINT8", [2**40, 2**40])],
)
def test_v2_shapes_claiming_more_than_the_body_holds_are_refused_before_decoding(
    datatype: str, shape: list[int]
) -> None:
    body = encode({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": [""] * 10}]})
    with pytest.raises(InvalidInput, match="shapes and data disagree"):
        v2.decode_request(body, None)


def test_v2_shapes_that_disagree_with_small_data_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"has 2 elements but its shape \[1000\] needs 1000"):
        v2.decode_request(
            encode({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1000], "data": [1, 2]}]}), None
        )
    with pytest.raises(InvalidInput, match=r"has 1 elements but its shape \[3\] needs 3"):
        v2.decode_request(
            encode({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [3], "data": ["a"]}]}), None
        )


def test_v2_binary_extension_is_held_to_the_same_bound() -> None:
    header = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [10**8], "parameters": {"binary_data_size": 4}}]
    }
    head = encode(header)
    with pytest.raises(InvalidInput, match="shapes and data disagree"):
        v2.decode_request(head + b"\x00" * 4, str(len(head)))
    header["inputs"][0]["shape"] = [5_000_000, 0]
    header["inputs"][0]["parameters"] = {"binary_data_size": 0}
    head = encode(header)
    with pytest.raises(InvalidInput, match="rows of no elements"):
        v2.decode_request(head, str(len(head)))


@pytest.mark.parametrize(
    ("datatype", "data", "binary"),
    [
        ("FP64", [1] * 600_000, False),  # "1," per FP64: 4x, the worst JSON numbers do
        ("BYTES", [""] * 600_000, False),  # '"",' per BYTES element
        ("BYTES", [""] * 600_000, True),  # 4 bytes per empty binary BYTES element
        ("BOOL", [True] * 600_000, False),
    ],
    ids=["fp64-json", "bytes-json", "bytes-binary", "bool-json"],
)
def test_v2_honest_worst_case_bodies_stay_under_the_bound(datatype: str, data: list, binary: bool) -> None:
    """K is chosen so no request whose data matches its shapes is refused."""
    n = len(data)
    if binary:
        raw = codecs.encode_binary_data(np.array(data, dtype=object))
        head = encode(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": datatype,
                        "shape": [n],
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ]
            }
        )
        body, length = head + raw, str(len(head))
    else:
        body, length = (
            encode({"inputs": [{"name": "x", "datatype": datatype, "shape": [n], "data": data}]}),
            None,
        )
    assert len(body) > codecs.DECODED_FLOOR  # the floor does not help: the multiple must
    request, _ = v2.decode_request(body, length)
    assert request.inputs[0].data.shape == (n,)


# --- V1 --------------------------------------------------------------------------------------

IRIS_SPEC = read_model_spec(Path(__file__).resolve().parents[2] / "examples" / "iris")


@pytest.mark.parametrize(
    "body",
    [b"[" * DEEP, b'{"instances":' + b"[" * DEEP + b"}", b'{"inputs":' + b"[" * 500 + b"]" * 500 + b"}"],
    ids=["top-level", "instances", "inputs-500"],
)
def test_v1_deep_nesting_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="nested .* levels deep"):
        scoring.v1_scoring_body(body, IRIS_SPEC)


def test_v1_scoring_body() -> None:
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    out = msgspec.json.decode(scoring.v1_scoring_body(encode({"instances": rows}), IRIS_SPEC))
    assert out == {"dataframe_split": {"columns": COLUMNS, "data": rows}}
    records = encode({"instances": [dict(zip(COLUMNS, r)) for r in rows]})
    assert scoring.v1_scoring_body(records, IRIS_SPEC) == records  # MLflow reads records itself
    ragged = encode({"instances": [rows[0], rows[1][:3]]})
    assert scoring.v1_scoring_body(ragged, IRIS_SPEC) == ragged
    with pytest.raises(InvalidInput, match="not valid JSON"):
        scoring.v1_scoring_body(b"[1,", IRIS_SPEC)
    with pytest.raises(InvalidInput, match='"instances" or "inputs"'):
        scoring.v1_scoring_body(b'{"rows": []}', IRIS_SPEC)


# --- MLflow scoring (/invocations) -----------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;format=pandas-split"],
)
def test_invocations_deep_json_is_refused_before_the_worker(content_type: str) -> None:
    for body in (b"[" * DEEP, b'{"dataframe_split":' + b"[" * 500 + b"]" * 500 + b"}"):
        with pytest.raises(InvalidInput, match="nested .* levels deep"):
            scoring.read_table(body, content_type, None)  # no fast path: the body would go to MLflow
        with pytest.raises(InvalidInput, match="nested"):
            scoring.read_table(body, content_type, COLUMNS)


def test_invocations_csv_is_not_read_as_json() -> None:
    csv = ("a\n" + "[" * 1000 + "\n").encode()
    assert scoring.read_table(csv, "text/csv", None) is None


def test_numeric_table_does_not_recurse_whatever_it_is_given() -> None:
    assert scoring.numeric_table(b"[" * DEEP, COLUMNS) is None
    assert scoring.numeric_table(b'{"dataframe_split":' + b"[" * DEEP, COLUMNS) is None


def _split(data: list, columns: list[str] = COLUMNS, **extra: object) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}, **extra}).encode()


def test_numeric_table_fast_path() -> None:
    (name, col), *_ = scoring.numeric_table(_split([[5.1, 3.5, 1.4, 0.2], [1, 2, 3, 4]]), COLUMNS)
    assert name == "sepal_length" and col.tolist() == [5.1, 1.0] and col.dtype == np.float64
    ints = scoring.numeric_table(_split([[5, 3, 1, 0]]), COLUMNS)
    assert ints is not None and ints[0][1].dtype == np.int64
    records = [dict(zip(COLUMNS, [1.0, 2.0, 3.0, 4.0]))]
    table = scoring.numeric_table(json.dumps({"dataframe_records": records}).encode(), COLUMNS)
    assert table is not None and [c.tolist() for _, c in table] == [[1.0], [2.0], [3.0], [4.0]]
    reordered = scoring.numeric_table(_split([[4, 3, 2, 1]], COLUMNS[::-1]), COLUMNS)
    assert reordered is not None and dict((n, c.tolist()) for n, c in reordered)["petal_width"] == [4]


@pytest.mark.parametrize(
    "body",
    [
        _split([[5.1, None, 1.4, 0.2]]),
        _split([[5.1, True, 1.4, 0.2]]),
        _split([[5.1, "3.5", 1.4, 0.2]]),
        _split([[5.1, [3.5], 1.4, 0.2]]),
        _split([[5.1, 3.5, 1.4]]),
        _split([]),
        _split([[1, 2, 3, 2**64]]),
        _split([[1, 2, 3, 4]], params={"a": 1}),
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[1, 2, 3, 4]], "index": [0]}}).encode(),
        json.dumps(
            {"dataframe_split": None, "dataframe_records": [dict(zip(COLUMNS, [1, 2, 3, 4]))]}
        ).encode(),
        json.dumps({"dataframe_records": [{"sepal_length": 1}]}).encode(),
        json.dumps({"inputs": [[1, 2, 3, 4]]}).encode(),
        b"{broken",
    ],
    ids=[
        "null",
        "bool",
        "string",
        "nested",
        "short-row",
        "no-rows",
        "past-int64",
        "params",
        "index",
        "null-split-and-records",
        "missing-column",
        "other-format",
        "not-json",
    ],
)
def test_numeric_table_leaves_anything_unusual_to_mlflow(body: bytes) -> None:
    assert scoring.numeric_table(body, COLUMNS) is None
