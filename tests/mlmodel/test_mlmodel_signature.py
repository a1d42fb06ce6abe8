"""parse_signature and to_v2_metadata over the signature formats of MLflow 1.9 to 3.x."""

from __future__ import annotations

import json

import pytest
from mlmodel_cases import mlmodel_text

from modelport.errors import ModelLoadError
from modelport.mlmodel import FieldSpec, parse_mlmodel, parse_signature, to_v2_metadata


def _inputs(*specs: dict) -> dict:
    return {"inputs": json.dumps(list(specs))}


@pytest.mark.parametrize(
    ("mlflow_type", "datatype", "numpy_dtype"),
    [
        ("double", "FP64", "float64"),
        ("float", "FP32", "float32"),
        ("long", "INT64", "int64"),
        ("integer", "INT32", "int32"),
        ("boolean", "BOOL", "bool"),
        ("string", "BYTES", "object"),
        ("binary", "BYTES", "object"),
        ("datetime", "BYTES", "datetime64[ns]"),
    ],
)
def test_column_types(mlflow_type: str, datatype: str, numpy_dtype: str) -> None:
    sig = parse_signature(_inputs({"type": mlflow_type, "name": "c"}))
    assert sig is not None
    (field,) = sig.inputs
    assert field == FieldSpec(
        name="c",
        datatype=datatype,
        shape=(-1,),
        required=True,
        mlflow_type=mlflow_type,
        numpy_dtype=numpy_dtype,
    )
    assert sig.input_kind == "columns"


@pytest.mark.parametrize(
    "mlflow_type", ["array", "object", "map", "any", "sparkml_vector", "from_the_future"]
)
def test_composite_columns_are_bytes_and_keep_raw(mlflow_type: str) -> None:
    raw = {"type": mlflow_type, "name": "c", "items": {"type": "double"}, "required": True}
    sig = parse_signature(_inputs(raw))
    assert sig is not None
    (field,) = sig.inputs
    assert (field.datatype, field.numpy_dtype, field.mlflow_type) == ("BYTES", None, mlflow_type)
    assert field.raw == raw


@pytest.mark.parametrize(
    ("flags", "required"),
    [
        ({}, True),
        ({"optional": True}, False),  # 2.4-2.9
        ({"optional": False}, True),
        ({"optional": "True"}, False),  # as in MLflow's own 2.4 PR example
        ({"required": False}, False),  # 2.10+
        ({"required": True}, True),
        ({"required": True, "optional": True}, True),  # "required" wins, as in 2.10-2.17
        ({"required": None}, True),
    ],
)
def test_required_and_optional(flags: dict, required: bool) -> None:
    sig = parse_signature(_inputs({"type": "double", "name": "x", **flags}))
    assert sig is not None
    assert sig.inputs[0].required is required


def test_tensor_spec() -> None:
    spec = {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}
    sig = parse_signature({"inputs": json.dumps([spec]), "outputs": json.dumps([spec])})
    assert sig is not None
    (field,) = sig.inputs
    assert (field.name, field.datatype, field.shape, field.numpy_dtype) == (None, "FP32", (-1, 4), "float32")
    assert (sig.input_kind, sig.output_kind) == ("tensors", "tensors")


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        ("float16", "FP16"),
        ("float64", "FP64"),
        ("int8", "INT8"),
        ("uint8", "UINT8"),
        ("uint64", "UINT64"),
        ("bool", "BOOL"),
        ("object", "BYTES"),
        ("str", "BYTES"),
        ("bytes", "BYTES"),
    ],
)
def test_tensor_dtypes(dtype: str, datatype: str) -> None:
    sig = parse_signature(_inputs({"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": [-1]}}))
    assert sig is not None
    assert sig.inputs[0].datatype == datatype
    assert sig.inputs[0].mlflow_type == dtype


def test_unnamed_columns_and_no_outputs() -> None:
    sig = parse_signature({"inputs": '[{"type": "double"}, {"type": "long"}]', "outputs": None})
    assert sig is not None
    assert [f.name for f in sig.inputs] == [None, None]
    assert (sig.outputs, sig.output_kind) == ((), "none")


def test_params_dtype_spelling_of_26() -> None:
    spec = parse_mlmodel(mlmodel_text("pyfunc-2.6-params-dtype"))
    assert spec.signature is not None
    by_name = {p.name: p for p in spec.signature.params}
    assert (by_name["temperature"].datatype, by_name["temperature"].default) == ("FP32", 0.7)
    assert (by_name["max_tokens"].mlflow_type, by_name["max_tokens"].datatype) == ("long", "INT64")
    assert by_name["stop"].shape == (-1,)
    assert by_name["stop"].default == ["\n"]
    assert by_name["temperature"].shape is None


def test_params_type_spelling_and_object_param() -> None:
    spec = parse_mlmodel(mlmodel_text("pyfunc-2.20-map-any"))
    assert spec.signature is not None
    config, when = spec.signature.params
    assert (config.mlflow_type, config.datatype, config.default) == ("object", "BYTES", {"depth": 2})
    assert (when.mlflow_type, when.datatype) == ("datetime", "BYTES")


def test_required_array_object_literal() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-2.12-required-array"))
    assert spec.signature is not None
    fields = {f.name: f for f in spec.signature.inputs}
    assert [fields[n].required for n in ("amount", "merchant", "embedding", "address")] == [
        True,
        False,
        True,
        False,
    ]
    assert fields["embedding"].raw["items"] == {"type": "double"}
    assert fields["address"].datatype == "BYTES"
    assert spec.signature.outputs[0].datatype == "INT64"


def test_optional_literal_of_25() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-2.5-optional"))
    assert spec.signature is not None
    assert {f.name: f.required for f in spec.signature.inputs} == {
        "age": True,
        "city": False,
        "seen": True,
        "blob": False,
        "n": True,
    }


@pytest.mark.parametrize(
    ("signature", "fragment"),
    [
        ({"inputs": "not json"}, "not valid JSON"),
        ({"inputs": '{"type": "double"}'}, "should be a list"),
        ({"inputs": '[{"name": "x"}]'}, "without a 'type'"),
        ({"inputs": '[{"type": "tensor"}]'}, "tensor-spec"),
        (
            {"inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int8", "shape": ["a"]}}]'},
            "bad tensor shape",
        ),
        (
            {
                "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int8", "shape": [1]}}, {"type": "long"}]'
            },
            "mixes",
        ),
        ({"inputs": "[]", "params": '[{"default": 1}]'}, "without 'name'"),
        (
            {"inputs": "[]", "params": '[{"name": "p", "type": "long", "default": 1, "shape": "x"}]'},
            "bad shape",
        ),
        ("inputs", "should be a mapping"),
    ],
)
def test_bad_signatures(signature, fragment: str) -> None:
    with pytest.raises(ModelLoadError, match=fragment):
        parse_signature(signature)


def test_no_signature() -> None:
    assert parse_signature(None) is None
    assert parse_signature({}) is None


def test_v2_metadata_columns_with_params() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-2.12-required-array"))
    body = to_v2_metadata(spec, "fraud", ["3"])
    assert body["name"] == "fraud"
    assert body["versions"] == ["3"]
    assert body["platform"] == "mlflow"
    assert body["inputs"][0] == {
        "name": "amount",
        "datatype": "FP64",
        "shape": [-1],
        "parameters": {"content_type": "np"},
    }
    assert [i["parameters"]["content_type"] for i in body["inputs"]] == ["np", "str", "pd_json", "pd_json"]
    # Unnamed outputs take MLServer's names.
    assert body["outputs"] == [
        {"name": "output-0", "datatype": "INT64", "shape": [-1], "parameters": {"content_type": "np"}}
    ]
    assert body["parameters"] == {
        "content_type": "pd",
        "params": [{"name": "threshold", "datatype": "FP64", "shape": [], "default": 0.5}],
    }
    json.dumps(body)  # the body must be plain JSON


def test_v2_metadata_unnamed_tensor() -> None:
    body = to_v2_metadata(parse_mlmodel(mlmodel_text("pytorch-2.16-tensor")), "mnist", [])
    assert body["inputs"] == [
        {"name": "input-0", "datatype": "FP32", "shape": [-1, 784], "parameters": {"content_type": "np"}}
    ]
    assert body["outputs"][0]["shape"] == [-1, 10]
    assert body["parameters"] == {"content_type": "np"}


def test_v2_metadata_named_tensors() -> None:
    body = to_v2_metadata(parse_mlmodel(mlmodel_text("tensorflow-2.11-named-tensors")), "tf", ["1", "2"])
    assert [(i["name"], i["datatype"], i["shape"]) for i in body["inputs"]] == [
        ("image", "UINT8", [-1, 28, 28, 1]),
        ("scale", "FP16", [-1]),
        ("label", "BYTES", [-1]),
    ]
    assert [(o["name"], o["datatype"]) for o in body["outputs"]] == [("probs", "FP32"), ("valid", "BOOL")]
    assert body["parameters"]["content_type"] == "dict"


def test_v2_metadata_unnamed_columns() -> None:
    spec = parse_mlmodel(
        "flavors: {python_function: {loader_module: m}}\n"
        'signature: {inputs: \'[{"type": "long"}, {"type": "string"}]\', outputs: \'[{"type": "double"}]\'}\n'
    )
    body = to_v2_metadata(spec, "m", [])
    assert [(i["name"], i["datatype"]) for i in body["inputs"]] == [
        ("input-0", "INT64"),
        ("input-1", "BYTES"),
    ]
    assert body["outputs"][0]["name"] == "output-0"


def test_v2_metadata_without_signature() -> None:
    body = to_v2_metadata(parse_mlmodel(mlmodel_text("sklearn-1.14")), "iris", ["1"])
    assert body == {"name": "iris", "versions": ["1"], "platform": "mlflow", "inputs": [], "outputs": []}


def test_v2_metadata_content_types_of_25() -> None:
    body = to_v2_metadata(parse_mlmodel(mlmodel_text("sklearn-2.5-optional")), "m", [])
    assert {i["name"]: i["parameters"]["content_type"] for i in body["inputs"]} == {
        "age": "np",
        "city": "str",
        "seen": "datetime",
        "blob": "base64",
        "n": "np",
    }
    assert body["outputs"][0]["name"] == "output-0"
