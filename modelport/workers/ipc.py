"""The server's side of the worker wire format: frames, packed arrays, and the requests and
replies of each worker operation. The only module outside the runtime that knows them.

The formats themselves are the runtime's ``framing`` and ``tensors`` modules, imported from
``modelport/_runtime``: they exist once, in the package that runs standalone in model
environments, and this module wraps them for the server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport._runtime.modelport_worker import framing
from modelport._runtime.modelport_worker.tensors import pack_array, unpack_array
from modelport.errors import ModelportError, from_code
from modelport.inference import ScoreResult

Reply = tuple[dict[str, Any], list[memoryview]]
Frame = tuple[dict[str, Any], list[Any]]

encode = framing.encode

__all__ = [
    "Frame",
    "PredictResult",
    "Reply",
    "decode_predict",
    "decode_score",
    "encode",
    "encode_predict",
    "encode_score",
    "error_of",
    "load_request",
    "pack_array",
    "ping_request",
    "read_frame",
    "unpack_array",
]


async def read_frame(reader: asyncio.StreamReader) -> Reply:
    """One frame (header, buffers) from a worker's socket."""
    head_len, count = framing.split_prefix(await reader.readexactly(framing.PREFIX.size))
    lengths = (
        framing.buffer_lengths(await reader.readexactly(framing.LENGTH.size * count), count) if count else []
    )
    header = framing.decode_header(await reader.readexactly(head_len))
    return header, [memoryview(await reader.readexactly(n)) for n in lengths]


def error_of(reply: dict[str, Any]) -> ModelportError:
    """The error a worker sent back as plain data."""
    details = reply.get("details") or {}
    return from_code(reply.get("code", "internal"), reply.get("message", "worker error"), **details)


# --- operations -----------------------------------------------------------------------------


def load_request(path: str, warm_up: bool = True) -> dict[str, Any]:
    return {"op": "load", "path": path, "warm_up": warm_up}


def ping_request() -> dict[str, Any]:
    return {"op": "ping", "id": 0}


@dataclass
class PredictResult:
    """What the model returned: its kind ("ndarray", "dataframe", ...) and named arrays."""

    kind: str
    outputs: list[tuple[str, np.ndarray]]
    json: Any = None


def encode_predict(arrays: list[tuple[str, np.ndarray]], layout: str, params: dict[str, Any] | None) -> Frame:
    buffers: list[Any] = []
    inputs = [pack_array(name, arr, buffers) for name, arr in arrays]
    return {"op": "predict", "inputs": inputs, "layout": layout, "params": params}, buffers


def decode_predict(reply: dict[str, Any], buffers: list[Any]) -> PredictResult:
    outputs = [(d["name"], unpack_array(d, buffers)) for d in reply.get("outputs") or []]
    return PredictResult(kind=reply.get("kind", "ndarray"), outputs=outputs, json=reply.get("json"))


def encode_score(body: bytes, content_type: str) -> Frame:
    """MLflow scoring of a body by the worker's own mlflow (``invocations``)."""
    return {"op": "invocations", "content_type": content_type}, [body]


def decode_score(reply: dict[str, Any], buffers: list[Any]) -> ScoreResult:
    return ScoreResult(reply["mimetype"], bytes(buffers[0]) if buffers else b"")
