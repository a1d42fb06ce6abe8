"""Protocol-neutral inference types: what every protocol adapter turns its wire format into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
