"""Numpy arrays to and from frame buffers, shared by the server and its workers.

Numeric arrays travel as their raw bytes; strings and bytes as the Open Inference
Protocol's binary BYTES layout (a little-endian u32 length before each element).
"""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, List, Tuple

import numpy as np

U32 = struct.Struct("<I")


def pack_bytes(items: Any) -> bytes:
    parts = []
    for item in items:
        raw = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(U32.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def unpack_bytes(raw: Any) -> List[bytes]:
    mv = memoryview(raw).cast("B")
    out, pos, end = [], 0, mv.nbytes
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated BYTES element length")
        (n,) = U32.unpack_from(mv, pos)
        pos += 4
        if pos + n > end:
            raise ValueError("BYTES element runs past the end of its buffer")
        out.append(bytes(mv[pos : pos + n]))
        pos += n
    return out


def pack_array(name: str, arr: Any, buffers: List[Any]) -> Dict[str, Any]:
    """Describe ``arr`` for a frame header, appending its payload to ``buffers``."""
    arr = np.asarray(arr)
    descr: Dict[str, Any] = {"name": name, "shape": list(arr.shape)}
    if arr.dtype.kind in "biuf":
        arr = np.ascontiguousarray(arr)
        descr["dtype"] = arr.dtype.str
        descr["buffer"] = len(buffers)
        buffers.append(arr.reshape(-1).view(np.uint8) if arr.size else b"")
        return descr
    flat = arr.reshape(-1).tolist()
    if arr.dtype.kind in "US" or all(isinstance(v, (str, bytes)) for v in flat):
        kinds = {type(v) for v in flat}
        descr["dtype"] = "bytes" if kinds == {bytes} else "str"
        descr["buffer"] = len(buffers)
        buffers.append(pack_bytes(flat))
        return descr
    # Anything else (None, nested lists, datetimes) as JSON; rare and small.
    descr["dtype"] = "json"
    descr["values"] = json.loads(json.dumps(flat, default=str))
    return descr


def unpack_array(descr: Dict[str, Any], buffers: List[Any]) -> np.ndarray:
    dtype = descr["dtype"]
    shape: Tuple[int, ...] = tuple(descr["shape"])
    if dtype == "json":
        values = descr["values"]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(shape)
    if dtype in ("str", "bytes"):
        items = unpack_bytes(buffers[descr["buffer"]])
        out = np.empty(len(items), dtype=object)
        out[:] = [b.decode() for b in items] if dtype == "str" else items
        return out.reshape(shape)
    return np.frombuffer(buffers[descr["buffer"]], dtype=np.dtype(dtype)).reshape(shape)
