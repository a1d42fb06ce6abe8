"""MLflow model signatures of every version, normalised into one internal form.

Also renders that form as the Open Inference Protocol (V2) model metadata body.
"""

from __future__ import annotations

import json
from typing import Any

from modelport.errors import ModelLoadError
from modelport.mlmodel.types import FieldSpec, ModelSpec, ParamSpec, Signature

# MLflow DataType name -> (V2 datatype, numpy dtype, MLServer content type).
_SCALAR_TYPES: dict[str, tuple[str, str | None, str]] = {
    "boolean": ("BOOL", "bool", "np"),
    "integer": ("INT32", "int32", "np"),
    "long": ("INT64", "int64", "np"),
    "float": ("FP32", "float32", "np"),
    "double": ("FP64", "float64", "np"),
    "string": ("BYTES", "object", "str"),
    "binary": ("BYTES", "object", "base64"),
    "datetime": ("BYTES", "datetime64[ns]", "datetime"),
}

# Types that hold nested values (MLflow >= 2.10): sent as JSON text, like MLServer's pd_json.
COMPOSITE_TYPES = ("array", "object", "map", "any", "sparkml_vector")

# numpy dtype name (as TensorSpec writes it) -> V2 datatype.
_TENSOR_TYPES: dict[str, str] = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}

INPUT_PREFIX = "input-"
OUTPUT_PREFIX = "output-"


def parse_signature(raw: dict[str, Any] | None) -> Signature | None:
    """Read MLmodel's `signature` mapping (values are JSON strings) into a Signature."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"MLmodel 'signature' should be a mapping, found {type(raw).__name__}")
    inputs, input_kind = _parse_schema(raw.get("inputs"), "inputs")
    outputs, output_kind = _parse_schema(raw.get("outputs"), "outputs")
    params = tuple(_parse_param(p) for p in _load_json_list(raw.get("params"), "params"))
    return Signature(
        inputs=inputs,
        outputs=outputs,
        params=params,
        input_kind=input_kind,
        output_kind=output_kind,
    )


def _load_json_list(value: Any, key: str) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ModelLoadError(f"MLmodel signature.{key} is not valid JSON: {exc}") from exc
    # Hand-written MLmodel files sometimes hold the list itself instead of a JSON string.
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise ModelLoadError(f"MLmodel signature.{key} should be a list of objects, found {value!r:.200}")
    return value


def _parse_schema(value: Any, key: str) -> tuple[tuple[FieldSpec, ...], str]:
    items = _load_json_list(value, key)
    if not items:
        return (), "none"
    tensors = [it.get("type") == "tensor" for it in items]
    if any(tensors) and not all(tensors):
        raise ModelLoadError(f"MLmodel signature.{key} mixes tensor and column specs, which MLflow forbids")
    if all(tensors):
        return tuple(_parse_tensor(it, key) for it in items), "tensors"
    return tuple(_parse_column(it, key) for it in items), "columns"


def _parse_tensor(item: dict[str, Any], key: str) -> FieldSpec:
    spec = item.get("tensor-spec")
    if not isinstance(spec, dict) or "dtype" not in spec:
        raise ModelLoadError(
            f"MLmodel signature.{key}: tensor spec without 'tensor-spec.dtype': {item!r:.200}"
        )
    dtype = str(spec["dtype"])
    try:
        shape = tuple(int(d) for d in spec.get("shape") or ())
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"MLmodel signature.{key}: bad tensor shape {spec.get('shape')!r}") from exc
    return FieldSpec(
        name=_name(item),
        datatype=tensor_datatype(dtype),
        shape=shape,
        required=True,
        mlflow_type=dtype,
        numpy_dtype=dtype,
        raw=item,
    )


def _parse_column(item: dict[str, Any], key: str) -> FieldSpec:
    mlflow_type = item.get("type")
    if not isinstance(mlflow_type, str):
        raise ModelLoadError(f"MLmodel signature.{key}: column spec without a 'type': {item!r:.200}")
    if mlflow_type in _SCALAR_TYPES:
        datatype, numpy_dtype, _ = _SCALAR_TYPES[mlflow_type]
    else:
        # array/object/map/any, and types newer than this code: JSON text over the wire.
        datatype, numpy_dtype = "BYTES", None
    return FieldSpec(
        name=_name(item),
        datatype=datatype,
        shape=(-1,),
        required=_required(item),
        mlflow_type=mlflow_type,
        numpy_dtype=numpy_dtype,
        raw=item,
    )


def _name(item: dict[str, Any]) -> str | None:
    name = item.get("name")
    return None if name is None else str(name)


def _required(item: dict[str, Any]) -> bool:
    # 2.10+ writes "required"; 2.4-2.9 wrote "optional" only when true.
    if "required" in item and item["required"] is not None:
        return _truthy(item["required"])
    if "optional" in item and item["optional"] is not None:
        return not _truthy(item["optional"])
    return True


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _parse_param(item: dict[str, Any]) -> ParamSpec:
    # 2.6 wrote "dtype", 2.7+ writes "type".
    mlflow_type = item.get("type") or item.get("dtype")
    if "name" not in item or not isinstance(mlflow_type, str):
        raise ModelLoadError(f"MLmodel signature.params: entry without 'name' and 'type': {item!r:.200}")
    shape = item.get("shape")
    try:
        shape = None if shape is None else tuple(int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"MLmodel signature.params: bad shape {shape!r} for '{item['name']}'") from exc
    return ParamSpec(
        name=str(item["name"]),
        datatype=_SCALAR_TYPES.get(mlflow_type, ("BYTES", None, ""))[0],
        mlflow_type=mlflow_type,
        default=item.get("default"),
        shape=shape,
    )


def tensor_datatype(dtype: str) -> str:
    """V2 datatype of a numpy dtype name; strings, objects and anything else travel as BYTES."""
    return _TENSOR_TYPES.get(dtype, "BYTES")


def content_type(field: FieldSpec, kind: str) -> str:
    """MLServer's per-tensor content type for a field (np, str, base64, datetime, pd_json)."""
    if kind == "tensors":
        return "np"
    if field.mlflow_type in _SCALAR_TYPES:
        return _SCALAR_TYPES[field.mlflow_type][2]
    return "pd_json"


def field_names(fields: tuple[FieldSpec, ...], prefix: str) -> list[str]:
    """Names as clients see them: the signature's, or MLServer's "input-0", "output-1", ..."""
    return [f.name if f.name else f"{prefix}{i}" for i, f in enumerate(fields)]


def model_content_type(signature: Signature) -> str | None:
    """How a whole request decodes, as MLServer names it: "pd", "dict" (named tensors) or "np"."""
    if signature.input_kind == "tensors":
        return "dict" if all(f.name for f in signature.inputs) else "np"
    if signature.input_kind == "columns":
        return "pd"
    return None


def to_v2_metadata(spec: ModelSpec, name: str, versions: list[str]) -> dict[str, Any]:
    """The Open Inference Protocol model metadata response body for a model.

    Beyond the spec's name/versions/platform/inputs/outputs, each tensor carries
    MLServer's `parameters.content_type`, and the model-level `parameters` holds
    the request content type and the MLflow inference params (`params`), which
    clients that ignore unknown keys (KServe, tritonclient) skip.
    """
    sig = spec.signature
    body: dict[str, Any] = {
        "name": name,
        "versions": list(versions),
        "platform": "mlflow",
        "inputs": [],
        "outputs": [],
    }
    if sig is None:
        return body
    body["inputs"] = _metadata_tensors(sig.inputs, sig.input_kind, INPUT_PREFIX)
    body["outputs"] = _metadata_tensors(sig.outputs, sig.output_kind, OUTPUT_PREFIX)
    parameters: dict[str, Any] = {}
    request_type = model_content_type(sig)
    if request_type:
        parameters["content_type"] = request_type
    if sig.params:
        parameters["params"] = [
            {
                "name": p.name,
                "datatype": p.datatype,
                "shape": list(p.shape) if p.shape is not None else [],
                "default": p.default,
            }
            for p in sig.params
        ]
    if parameters:
        body["parameters"] = parameters
    return body


def _metadata_tensors(fields: tuple[FieldSpec, ...], kind: str, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "datatype": f.datatype,
            "shape": list(f.shape),
            "parameters": {"content_type": content_type(f, kind)},
        }
        for name, f in zip(field_names(fields, prefix), fields, strict=True)
    ]
