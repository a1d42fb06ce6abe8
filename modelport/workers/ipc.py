"""The server's side of the worker wire format: frames, packed arrays, and the requests and
replies of each worker operation. The only module outside the runtime that knows them.

The formats themselves are the runtime's ``framing`` and ``tensors`` modules, imported from
``modelport/_runtime``: they exist once, in the package that runs standalone in model
environments, and this module wraps them for the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from modelport._runtime.modelport_worker import framing
from modelport._runtime.modelport_worker.tensors import pack_array, unpack_array
from modelport.errors import ModelportError, from_code
from modelport.inference import ScoreResult

Reply = tuple[dict[str, Any], list[memoryview]]
Frame = tuple[dict[str, Any], list[Any]]

_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode


def encode(header: dict[str, Any], buffers: Sequence[Any] = ()) -> list[Any]:
    """The pieces of one frame (the runtime's ``framing.encode``, with msgspec's JSON: 5x faster)."""
    head = _encode_json(header)
    views = [memoryview(b).cast("B") for b in buffers]
    lengths = b"".join([framing.LENGTH.pack(v.nbytes) for v in views])
    return [framing.PREFIX.pack(len(head), len(views)) + lengths + head, *views]


def decode_header(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        header: dict[str, Any] = _decode_json(raw)
    except msgspec.DecodeError:
        header = framing.decode_header(raw)  # NaN or Infinity, which Python's json writes and msgspec refuses
    return header


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
    header = decode_header(await reader.readexactly(head_len))
    return header, [memoryview(await reader.readexactly(n)) for n in lengths]


class FrameProtocol(asyncio.Protocol):
    """Reads frames from a worker's socket as they arrive and hands each to ``on_frame`` in the
    same event-loop callback: no reader task to wake (StreamReader's readexactly cost two loop
    iterations per reply). ``closed`` resolves when the socket closes."""

    def __init__(self, on_frame: Callable[[Reply], None]) -> None:
        self.on_frame = on_frame
        self.buf = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.WriteTransport | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        prefix = framing.PREFIX.size
        while len(buf) >= prefix:
            head_len, count = framing.PREFIX.unpack_from(buf)
            start = prefix + framing.LENGTH.size * count
            if len(buf) < start:
                return
            lengths = framing.buffer_lengths(buf[prefix:start], count) if count else []
            end = start + head_len + sum(lengths)
            if len(buf) < end:
                return
            header = decode_header(buf[start : start + head_len])
            buffers = []
            at = start + head_len
            for n in lengths:
                # A slice is a copy: arrays built on it outlive the receive buffer, and stay writable.
                buffers.append(memoryview(buf[at : at + n]))
                at += n
            del buf[:end]
            self.on_frame((header, buffers))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    async def drain(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        if self._writable is not None:
            await self._writable


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
