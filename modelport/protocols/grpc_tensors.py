"""Open Inference Protocol gRPC messages to the core's ``InferenceRequest`` and back.

Inputs arrive typed (``contents``) or raw (``raw_input_contents``); both go through the V2
codecs REST uses, so a mistake gets the same message over either protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import InvalidInput
from modelport.inference import InferenceRequest, InferenceResponse, Tensor
from modelport.protocols.codecs import (
    check_decoded_size,
    decode_binary_tensor,
    decode_json_tensor,
    decoded_nbytes,
    element_count,
    encode_binary_data,
)
from modelport.protocols.proto import inference_pb2 as pb

# The InferTensorContents field each datatype's elements travel in; FP16 has none (raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_FIELDS = tuple(dict.fromkeys(CONTENTS_FIELD.values()))
# Datatypes whose contents field holds exactly their element type: read straight into numpy.
# The others (BOOL, 8- and 16-bit integers) go through the codec as Python values, which
# checks that each fits (300 is no INT8) with REST's message.
_NATIVE: dict[str, np.dtype[Any]] = {
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
# Below this many elements np.fromiter beats np.array over a repeated field (µs of set-up).
_SMALL = 32

_Parameters = Mapping[str, pb.InferParameter]


def parameters(wire: _Parameters) -> dict[str, Any]:
    """InferParameter values as Python values (an unset one is None)."""
    if not wire:
        return {}
    out = {}
    for key, value in wire.items():
        kind = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, kind) if kind is not None else None
    return out


def set_parameters(wire: Any, values: Mapping[str, Any]) -> None:
    """Fill a map<string, InferParameter> from Python values."""
    for key, value in values.items():
        p = wire[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int):
            if value >= 1 << 63:
                p.uint64_param = value
            else:
                p.int64_param = value
        elif isinstance(value, float):
            p.double_param = value
        elif isinstance(value, bytes):
            p.string_param = value.decode(errors="replace")
        else:
            p.string_param = value if isinstance(value, str) else str(value)


def decode_request(msg: pb.ModelInferRequest, size: int) -> tuple[InferenceRequest, bool]:
    """The core's request for a ModelInferRequest of ``size`` bytes, and whether its outputs
    should be answered raw (see ``wants_raw``)."""
    inputs = msg.inputs
    if not inputs:
        raise InvalidInput("invalid inference request: 'inputs' is empty")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise InvalidInput(
            f"the request has {len(inputs)} inputs but {len(raw)} raw_input_contents; "
            "raw contents must be given for every input, in the order of 'inputs'"
        )
    # Names, datatypes and shapes, and what they would decode to, before any data is read.
    # (Each field of a parsed message is read once: every read builds a Python object.)
    seen: set[str] = set()
    decoded = 0
    heads = []
    for inp in inputs:
        name = inp.name
        if name in seen:
            raise InvalidInput(f"input '{name}' is given more than once; input names must be unique")
        seen.add(name)
        datatype = inp.datatype
        shape = list(inp.shape)
        decoded += decoded_nbytes(name, datatype, shape)
        heads.append((inp, name, datatype, shape))
    check_decoded_size(decoded, size)
    if raw:
        tensors = [_raw_tensor(*head, data) for head, data in zip(heads, raw)]
    else:
        tensors = [_typed_tensor(*head) for head in heads]
    request_parameters = parameters(msg.parameters)
    outputs = msg.outputs
    request = InferenceRequest(
        inputs=tensors,
        id=msg.id or None,
        parameters=request_parameters,
        outputs=[o.name for o in outputs] if outputs else None,
    )
    return request, bool(raw) or wants_raw(request_parameters, outputs)


def wants_raw(request_parameters: dict[str, Any], outputs: Any) -> bool:
    """Outputs go raw when asked for in binary (``binary_data_output`` on the request,
    ``binary_data`` on any requested output: the V2 binary extension's names)."""
    if request_parameters.get("binary_data_output") is True:
        return True
    for out in outputs:
        if out.parameters:
            flag = out.parameters.get("binary_data")
            if flag is not None and flag.WhichOneof("parameter_choice") == "bool_param" and flag.bool_param:
                return True
    return False


def _raw_tensor(
    inp: pb.ModelInferRequest.InferInputTensor, name: str, datatype: str, shape: list[int], data: bytes
) -> Tensor:
    if inp.HasField("contents"):
        raise InvalidInput(
            f"input '{name}' has 'contents' but the request also sends raw_input_contents; "
            "send every input's data one way, all raw or all in 'contents'"
        )
    return decode_binary_tensor(
        name, datatype, shape, memoryview(data), parameters(inp.parameters), header_checked=True
    )


def _typed_tensor(
    inp: pb.ModelInferRequest.InferInputTensor, name: str, datatype: str, shape: list[int]
) -> Tensor:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:  # FP16: unknown datatypes were refused by decoded_nbytes
        raise InvalidInput(
            f"input '{name}' has datatype {datatype}, which 'contents' has no field for; "
            "send it in raw_input_contents"
        )
    contents = inp.contents
    values = getattr(contents, field)
    n = len(values)
    count = element_count(shape)
    native = _NATIVE.get(datatype)
    if native is not None and n == count:
        # Well-formed numbers: nothing for the codec to check (its checks are on the paths below).
        arr = np.fromiter(values, native, n) if n <= _SMALL else np.array(values, native)
        return Tensor(name, datatype, shape, arr.reshape(shape), parameters(inp.parameters))
    if n != count:
        stray = [f for f in _FIELDS if f != field and len(getattr(contents, f))]
        if stray:
            raise InvalidInput(
                f"input '{name}' has datatype {datatype}, whose elements go in contents.{field}, "
                f"but its data is in contents.{stray[0]}"
            )
    data: Any
    if native is None:
        data = list(values)
    elif n <= _SMALL:
        data = np.fromiter(values, native, n)
    else:
        data = np.array(values, native)
    return decode_json_tensor(name, datatype, shape, data, parameters(inp.parameters), header_checked=True)


# --- responses ----------------------------------------------------------------------------


def encode_response(
    resp: InferenceResponse, raw: bool, raw_sink: list[Any] | None = None
) -> pb.ModelInferResponse:
    """A ModelInferResponse: outputs raw when ``raw`` (or when one is FP16, which has no typed field).

    With ``raw_sink``, raw outputs go there (as buffers) instead of into the message: see ``response_bytes``.
    """
    msg = pb.ModelInferResponse(model_name=resp.model_name, id=resp.id or "")
    if resp.model_version is not None:
        msg.model_version = resp.model_version
    if resp.parameters:
        set_parameters(msg.parameters, resp.parameters)
    outputs = resp.outputs
    if not raw:
        raw = any(t.datatype not in CONTENTS_FIELD for t in outputs)
    for t in outputs:
        out = msg.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        if t.parameters:
            set_parameters(out.parameters, t.parameters)
        if raw_sink is not None and raw:
            raw_sink.append(_raw_buffer(t.data))
        elif raw:
            msg.raw_output_contents.append(encode_binary_data(t.data))
        else:
            _set_contents(out.contents, t)
    return msg


# ModelInferResponse.raw_output_contents: field 6, length-delimited.
_RAW_OUTPUT_TAG = b"\x32"


def response_bytes(resp: InferenceResponse, raw: bool) -> bytes:
    """``encode_response`` serialized, its raw outputs framed straight from their arrays: one copy
    of each, where adding them to the message and serializing it would make three."""
    buffers: list[Any] = []
    head = encode_response(resp, raw, buffers).SerializeToString()
    if not buffers:
        return head
    parts: list[Any] = [head]
    for buf in buffers:
        parts.append(_RAW_OUTPUT_TAG + varint(len(buf)))
        parts.append(buf)
    return b"".join(parts)


def varint(n: int) -> bytes:
    """A protobuf base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _raw_buffer(arr: np.ndarray) -> Any:
    """The bytes of a raw output: numbers as a view of the (contiguous) array, BYTES packed."""
    if arr.dtype.kind in "biuf":
        return np.ascontiguousarray(arr).reshape(-1).data.cast("B")
    return encode_binary_data(arr)


def _set_contents(contents: pb.InferTensorContents, t: Tensor) -> None:
    values = getattr(contents, CONTENTS_FIELD[t.datatype])
    flat = t.data.reshape(-1)
    if t.datatype == "BYTES":
        values.extend([_as_bytes(v) for v in flat.tolist()])
    else:
        values.extend(flat.tolist())


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else str(value)).encode()
