"""Protocol-neutral inference types: what every protocol adapter turns its wire format into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import RequestTimeout

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
    # The client's deadline (event loop clock), when its protocol sends one (gRPC).
    deadline: float | None = None


@dataclass
class InferenceResponse:
    model_name: str
    outputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


class ScoreResult:
    """An MLflow scoring answer (a prediction): its content type and body, as MLflow shapes them."""

    __slots__ = ("body", "content_type")

    def __init__(self, content_type: str, body: bytes) -> None:
        self.content_type = content_type
        self.body = body

    def __repr__(self) -> str:
        return f"ScoreResult({self.content_type!r}, {self.body[:60]!r})"


class Deadline:
    """When a request is answered with a timeout (``at``) and when a worker still holding it is replaced
    (``kill_at``), both on the event loop's clock.

    ``kill_at`` is the server's own limit (``--request-timeout``). A client's shorter deadline
    answers the request sooner but never kills a worker: otherwise any client could make the
    server restart its workers at will.
    """

    __slots__ = ("at", "kill_at", "timeout_s")

    def __init__(self, at: float, kill_at: float | None, timeout_s: float | None) -> None:
        self.at = at
        self.kill_at = kill_at
        self.timeout_s = timeout_s

    def error(self, queued: bool = False) -> RequestTimeout:
        where = " (it was still waiting for a worker)" if queued else ""
        if self.kill_at is None or self.timeout_s is None or self.at < self.kill_at:
            return RequestTimeout(f"the request did not finish before the client's deadline{where}")
        return RequestTimeout(
            f"the request did not finish within {self.timeout_s:g} s (--request-timeout){where}"
        )


def earliest(deadlines: list[Deadline | None]) -> Deadline | None:
    """The deadline of a merged model call: the earliest answer and kill times of its members."""
    given = [d for d in deadlines if d is not None]
    if len(given) <= 1:
        return given[0] if given else None
    first = min(given, key=lambda d: d.at)
    kills = [d for d in given if d.kill_at is not None]
    if not kills:
        return first
    limit = min(kills, key=lambda d: d.kill_at)  # type: ignore[arg-type,return-value]
    if limit is first:
        return first
    return Deadline(first.at, limit.kill_at, limit.timeout_s)
