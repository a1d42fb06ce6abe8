"""Open Inference Protocol tensors: datatypes, JSON data, the binary tensor extension,
and the MLServer ``content_type`` conventions (``np``, ``pd``, ``str``, ``base64``).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from modelport._runtime.modelport_worker.tensors import pack_bytes, unpack_bytes
from modelport.errors import InvalidInput
from modelport.inference import NUMPY_OF, Tensor


def element_count(shape: list[int]) -> int:
    return math.prod(shape) if shape else 1


def _check_shape(name: str, shape: list[int]) -> None:
    if any((not isinstance(d, int)) or d < 0 for d in shape):
        raise InvalidInput(
            f"input '{name}' has an invalid shape {shape}: dimensions must be non-negative integers"
        )


def decode_json_tensor(
    name: str, datatype: str, shape: list[int], data: Any, parameters: dict[str, Any]
) -> Tensor:
    """A V2 input whose data came in the JSON body."""
    _check_shape(name, shape)
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_tensor(name, shape, _flatten(data), parameters)
    dtype = NUMPY_OF.get(datatype)
    if dtype is None:
        raise InvalidInput(
            f"input '{name}' has unknown datatype {datatype!r}; expected one of {', '.join([*NUMPY_OF, 'BYTES'])}"
        )
    try:
        arr = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"input '{name}': data does not fit datatype {datatype}: {exc}") from exc
    if datatype == "BOOL" and not _all_bools(data):
        raise InvalidInput(f"input '{name}' has datatype BOOL but its data holds non-boolean values")
    if arr.size != count:
        raise InvalidInput(f"input '{name}' has {arr.size} elements but its shape {shape} needs {count}")
    if datatype.startswith(("INT", "UINT")) and _has_fraction(data):
        raise InvalidInput(f"input '{name}' has datatype {datatype} but its data holds non-integer numbers")
    return Tensor(name, datatype, shape, arr.reshape(shape), parameters)


def decode_binary_tensor(
    name: str, datatype: str, shape: list[int], raw: memoryview, parameters: dict[str, Any]
) -> Tensor:
    """A V2 input sent with the binary tensor data extension."""
    _check_shape(name, shape)
    count = element_count(shape)
    if datatype == "BYTES":
        try:
            items = unpack_bytes(raw)
        except ValueError as exc:
            raise InvalidInput(f"input '{name}': malformed binary BYTES data: {exc}") from exc
        return _bytes_tensor(name, shape, items, parameters)
    dtype = NUMPY_OF.get(datatype)
    if dtype is None:
        raise InvalidInput(f"input '{name}' has unknown datatype {datatype!r}")
    if raw.nbytes != count * dtype.itemsize:
        raise InvalidInput(
            f"input '{name}' has {raw.nbytes} bytes of binary data but shape {shape} of {datatype} needs {count * dtype.itemsize}"
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return Tensor(name, datatype, shape, arr, parameters)


def _bytes_tensor(name: str, shape: list[int], items: list[Any], parameters: dict[str, Any]) -> Tensor:
    count = element_count(shape)
    if len(items) != count:
        raise InvalidInput(f"input '{name}' has {len(items)} elements but its shape {shape} needs {count}")
    arr = np.empty(count, dtype=object)
    arr[:] = [_bytes_item(name, v, parameters) for v in items]
    return Tensor(name, "BYTES", shape, arr.reshape(shape), parameters)


def _bytes_item(name: str, value: Any, parameters: dict[str, Any]) -> Any:
    content_type = parameters.get("content_type")
    if content_type == "base64":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise InvalidInput(f"input '{name}' has content_type base64 but holds invalid base64") from exc
    if isinstance(value, bytes):
        if content_type == "str":
            try:
                return value.decode()
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"input '{name}' has content_type str but is not valid UTF-8") from exc
        return value
    if isinstance(value, str):
        return value
    raise InvalidInput(f"input '{name}' has datatype BYTES but holds {type(value).__name__} values")


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


def encode_json_data(arr: np.ndarray) -> list[Any]:
    """Row-major flat data for a V2 JSON output."""
    flat = arr.reshape(-1)
    if flat.dtype.kind in "biuf":
        return flat.tolist()
    return [_text(v) for v in flat.tolist()]


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
