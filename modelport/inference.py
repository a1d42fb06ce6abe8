"""Protocol-neutral inference types: what every protocol adapter turns its wire format into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Open Inference Protocol datatypes and the numpy dtypes they travel as (BYTES: object arrays).
NUMPY_OF: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_DATATYPE_OF: dict[str, str] = {dt.str: name for name, dt in NUMPY_OF.items()}


def datatype_of(arr: np.ndarray) -> str:
    if arr.dtype.kind in "biuf":
        return _DATATYPE_OF.get(arr.dtype.str, "FP64")
    return "BYTES"


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferenceRequest:
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    # Names of the outputs asked for; None means all.
    outputs: list[str] | None = None


@dataclass
class InferenceResponse:
    model_name: str
    outputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawResponse:
    """A response already shaped by the model's environment (MLflow scoring)."""

    status: int
    content_type: str
    body: bytes
