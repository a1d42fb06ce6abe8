"""Open Inference Protocol tensors: datatypes, JSON data, the binary tensor extension,
and the MLServer ``content_type`` conventions (``np``, ``pd``, ``str``, ``base64``).

The limits every decoded body is held to live in ``modelport.limits`` (the core applies
them too) and are re-exported here for the protocol adapters.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterable
from functools import lru_cache
from itertools import chain
from typing import Any

import msgspec
import numpy as np

from modelport.errors import InvalidInput
from modelport.inference import NUMPY_OF, Tensor
from modelport.limits import (  # noqa: F401 - re-exported
    BYTES_ELEMENT_COST,
    DECODED_FLOOR,
    DECODED_PER_BODY_BYTE,
    MAX_JSON_DEPTH,
    OFF_LOOP_BYTES,
    check_decoded_size,
    check_json_depth,
    json_depth,
    off_loop,
)

# --- binary BYTES ---------------------------------------------------------------------
# The binary tensor extension's layout: a little-endian u32 length before each element.
# (The worker runtime frames BYTES the same way, with its own copy: it runs standalone.)

_U32 = struct.Struct("<I")


def pack_bytes(items: Iterable[str | bytes]) -> bytes:
    parts = []
    for item in items:
        raw = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(_U32.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def unpack_bytes(raw: bytes | memoryview) -> list[bytes]:
    mv = memoryview(raw).cast("B")
    out, pos, end = [], 0, mv.nbytes
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated BYTES element length")
        (n,) = _U32.unpack_from(mv, pos)
        pos += 4
        if pos + n > end:
            raise ValueError("BYTES element runs past the end of its buffer")
        out.append(bytes(mv[pos : pos + n]))
        pos += n
    return out


# --- tensor headers -----------------------------------------------------------------


def element_count(shape: list[int]) -> int:
    return math.prod(shape) if shape else 1


def _check_shape(name: str, shape: list[int]) -> None:
    for d in shape:
        if type(d) is not int or d < 0:
            raise InvalidInput(
                f"input '{name}' has an invalid shape {shape}: dimensions must be non-negative integers"
            )
    if shape and shape[0] > 0 and 0 in shape:
        # No elements but rows: each row would become an object of its own downstream.
        raise InvalidInput(
            f"input '{name}' has shape {shape}: {shape[0]} rows of no elements; "
            "an empty tensor has 0 as its first dimension"
        )


def _check_datatype(name: str, datatype: str) -> None:
    if datatype != "BYTES" and datatype not in NUMPY_OF:
        raise InvalidInput(
            f"input '{name}' has unknown datatype {datatype!r}; expected one of {', '.join([*NUMPY_OF, 'BYTES'])}"
        )


def decoded_nbytes(name: str, datatype: str, shape: list[int]) -> int:
    """Check an input's datatype and shape; return the bytes its decoded tensor will take."""
    _check_datatype(name, datatype)
    _check_shape(name, shape)
    per_element = BYTES_ELEMENT_COST if datatype == "BYTES" else NUMPY_OF[datatype].itemsize
    return element_count(shape) * per_element


# --- JSON data ----------------------------------------------------------------------

_ELEMENT_TYPE: dict[str, type] = {
    "BOOL": bool,
    "BYTES": str,
    **{dt: int for dt in NUMPY_OF if dt.startswith(("INT", "UINT"))},
    **{dt: float for dt in NUMPY_OF if dt.startswith("FP")},
}


@lru_cache(maxsize=64)
def _typed_decoder(element: type, depth: int) -> msgspec.json.Decoder[Any]:
    t: Any = element
    for _ in range(depth):
        t = list[t]
    return msgspec.json.Decoder(t)


_ROWS = msgspec.json.Decoder(list[msgspec.Raw])
# Large data of objects (strings, rows) is decoded a slice of rows at a time: one C call over
# a million rows holds the GIL for ~0.3 s, which the event loop (waiting for the GIL) would
# feel as a stall. Flat numbers are not sliced: a Raw per number would cost more than the number.
SLICE_ROWS = 1 << 16


def _decode_typed(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw, sliced: bool) -> Any:
    if not sliced or len(raw) <= OFF_LOOP_BYTES:
        return decoder.decode(raw)
    rows = _ROWS.decode(raw)
    out: list[Any] = []
    for i in range(0, len(rows), SLICE_ROWS):
        out.extend(decoder.decode(b"[" + b",".join(rows[i : i + SLICE_ROWS]) + b"]"))
    return out


def _decode_data(datatype: str, shape: list[int], raw: msgspec.Raw) -> tuple[Any, int]:
    """JSON data as Python values, and how deep it was checked to be all of the datatype's
    element type (0: unchecked). Flat data and data nested as its shape are checked in C."""
    element = _ELEMENT_TYPE[datatype]
    for depth in (1, len(shape)) if len(shape) > 1 else (1,):
        try:
            sliced = datatype == "BYTES" or depth > 1
            return _decode_typed(_typed_decoder(element, depth), raw, sliced), depth
        except msgspec.ValidationError:
            pass
    try:
        return msgspec.json.decode(raw), 0
    except RecursionError as exc:  # check_json_depth ran first; never trust one guard alone
        raise InvalidInput("the request body's JSON is nested too deeply") from exc


def decode_json_tensor(
    name: str,
    datatype: str,
    shape: list[int],
    data: Any,
    parameters: dict[str, Any],
    header_checked: bool = False,
) -> Tensor:
    """A V2 input whose data came in the JSON body (as ``msgspec.Raw`` or decoded);
    ``header_checked``: its datatype and shape already passed ``decoded_nbytes``."""
    if not header_checked:
        _check_datatype(name, datatype)
        _check_shape(name, shape)
    count = element_count(shape)
    typed = 0  # how deep the data was checked to be of the element type
    if isinstance(data, msgspec.Raw):
        data, typed = _decode_data(datatype, shape, data)
    if data is None:
        raise InvalidInput(f"input '{name}' has null data")
    if datatype == "BYTES":
        if typed:
            items = data
            for _ in range(typed - 1):
                items = list(chain.from_iterable(items))
            return _bytes_tensor(name, shape, items, parameters, all_str=True)
        return _bytes_tensor(name, shape, _flatten(data), parameters)
    dtype = NUMPY_OF[datatype]
    try:
        arr = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"input '{name}': data does not fit datatype {datatype}: {exc}") from exc
    if arr.size != count:
        raise InvalidInput(f"input '{name}' has {arr.size} elements but its shape {shape} needs {count}")
    if not typed:
        if datatype == "BOOL" and not _all_bools(data):
            raise InvalidInput(f"input '{name}' has datatype BOOL but its data holds non-boolean values")
        if datatype.startswith(("INT", "UINT")) and _has_fraction(data):
            raise InvalidInput(
                f"input '{name}' has datatype {datatype} but its data holds non-integer numbers"
            )
    return Tensor(name, datatype, shape, arr.reshape(shape), parameters)


def decode_binary_tensor(
    name: str,
    datatype: str,
    shape: list[int],
    raw: memoryview,
    parameters: dict[str, Any],
    header_checked: bool = False,
) -> Tensor:
    """A V2 input sent with the binary tensor data extension (``header_checked``: as above)."""
    if not header_checked:
        _check_datatype(name, datatype)
        _check_shape(name, shape)
    count = element_count(shape)
    if datatype == "BYTES":
        if raw.nbytes < 4 * count:  # every element has a 4-byte length: refuse before unpacking
            raise InvalidInput(
                f"input '{name}' has {raw.nbytes} bytes of binary BYTES data, too few for the "
                f"{count} elements of its shape {shape}"
            )
        try:
            items = unpack_bytes(raw)
        except ValueError as exc:
            raise InvalidInput(f"input '{name}': malformed binary BYTES data: {exc}") from exc
        return _bytes_tensor(name, shape, items, parameters)
    dtype = NUMPY_OF[datatype]
    if raw.nbytes != count * dtype.itemsize:
        raise InvalidInput(
            f"input '{name}' has {raw.nbytes} bytes of binary data but shape {shape} of {datatype} needs {count * dtype.itemsize}"
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return Tensor(name, datatype, shape, arr, parameters)


def _bytes_tensor(
    name: str, shape: list[int], items: list[Any], parameters: dict[str, Any], all_str: bool = False
) -> Tensor:
    count = element_count(shape)
    if len(items) != count:
        raise InvalidInput(f"input '{name}' has {len(items)} elements but its shape {shape} needs {count}")
    content_type = parameters.get("content_type")
    if content_type == "base64":
        items = [_base64(name, v) for v in items]
    elif not all_str:
        kinds = set(map(type, items))
        if not kinds <= {str, bytes}:
            bad = next(k for k in kinds if k not in (str, bytes))
            raise InvalidInput(f"input '{name}' has datatype BYTES but holds {bad.__name__} values")
        if content_type == "str" and bytes in kinds:
            items = [_utf8(name, v) for v in items]
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return Tensor(name, "BYTES", shape, arr.reshape(shape), parameters)


def _base64(name: str, value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise InvalidInput(f"input '{name}' has content_type base64 but holds invalid base64") from exc


def _utf8(name: str, value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"input '{name}' has content_type str but is not valid UTF-8") from exc


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _all_bools(data: Any) -> bool:
    return all(isinstance(v, bool) for v in _flatten(data))


def _has_fraction(data: Any) -> bool:
    return any(isinstance(v, float) and not v.is_integer() for v in _flatten(data))


# --- outputs ------------------------------------------------------------------------


def encode_json_data(arr: np.ndarray) -> list[Any]:
    """Row-major flat data for a V2 JSON output."""
    flat = arr.reshape(-1)
    values = flat.tolist()
    if flat.dtype.kind in "biuf" or set(map(type, values)) <= {str}:
        return values  # type: ignore[no-any-return]
    return [_text(v) for v in values]


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return base64.b64encode(value).decode()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def encode_binary_data(arr: np.ndarray) -> bytes:
    if arr.dtype.kind in "biuf":
        return np.ascontiguousarray(arr).tobytes()
    return pack_bytes(v if isinstance(v, (str, bytes)) else str(v) for v in arr.reshape(-1).tolist())


def output_nbytes(tensors: list[Tensor]) -> int:
    """About what encoding these outputs will cost: decides whether to do it off the loop."""
    return sum(
        t.data.nbytes if t.data.dtype.kind in "biuf" else t.data.size * BYTES_ELEMENT_COST for t in tensors
    )
