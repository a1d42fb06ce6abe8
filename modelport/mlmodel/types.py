"""The internal, version-neutral form of an MLmodel file and its signature."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldSpec:
    """One input or output: a named column (ColSpec) or a tensor (TensorSpec)."""

    name: str | None
    # Open Inference Protocol datatype: BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64, BYTES.
    datatype: str
    # V2 shape; -1 for variable dimensions. Columns are [-1].
    shape: tuple[int, ...]
    required: bool = True
    # The MLflow type as written: "double", "string", "array", ... or the numpy dtype for tensors.
    mlflow_type: str = ""
    # numpy dtype string for tensors/columns that map to one ("float64", "object"), else None.
    numpy_dtype: str | None = None
    # Raw spec dict as written in MLmodel (for types that need it: array/object/map).
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    datatype: str
    # MLflow param type as written: "string", "double", "long", "boolean", "datetime", ...
    mlflow_type: str
    default: Any = None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Signature:
    inputs: tuple[FieldSpec, ...] = ()
    outputs: tuple[FieldSpec, ...] = ()
    params: tuple[ParamSpec, ...] = ()
    # "columns" (ColSpec), "tensors" (TensorSpec) or "none".
    input_kind: str = "none"
    output_kind: str = "none"


@dataclass(frozen=True)
class ModelSpec:
    """What modelport needs to know of a saved MLflow model."""

    path: str
    flavors: dict[str, dict[str, Any]]
    signature: Signature | None
    mlflow_version: str | None = None
    # python_function flavor's loader module and Python version.
    loader_module: str | None = None
    python_version: str | None = None
    run_id: str | None = None
    model_uuid: str | None = None
    # MLflow 3.x logged-model id ("m-..."), None before 3.0.
    model_id: str | None = None
    # Relative path of the saved input example (input_example.json), if any.
    input_example_path: str | None = None
    # Environment files named by the python_function flavor ("conda", "virtualenv", "requirements").
    env_files: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    # The MLmodel YAML as parsed, for rewriting it.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def primary_flavor(self) -> str:
        """The flavor that saved the model (not python_function), e.g. "sklearn"."""
        others = [f for f in self.flavors if f != "python_function"]
        return others[0] if others else "python_function"
