"""Open Inference Protocol (V2) REST: request bodies to ``InferenceRequest`` and back.

Supports JSON bodies and the binary tensor data extension
(``Inference-Header-Content-Length``) in both directions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from modelport.errors import InvalidInput, MethodNotAllowed, ModelNotFound
from modelport.inference import InferenceRequest, InferenceResponse
from modelport.protocols.codecs import (
    OFF_LOOP_BYTES,
    check_decoded_size,
    check_json_depth,
    decode_binary_tensor,
    decode_json_tensor,
    decoded_nbytes,
    encode_binary_data,
    encode_json_data,
    off_loop,
    output_nbytes,
)
from modelport.protocols.messages import Handler, HttpRequest, HttpResponse

if TYPE_CHECKING:
    from modelport.dataplane import DataPlane

HEADER_LENGTH = "inference-header-content-length"


class _Input(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]
    # Left as JSON text until every shape has been checked against the body's size.
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    parameters: dict[str, Any] | None = None


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class _Request(msgspec.Struct):
    inputs: list[_Input]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[_Output] | None = None


_decoder = msgspec.json.Decoder(_Request)
_encoder = msgspec.json.Encoder()


def decode_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, dict[str, bool]]:
    """Parse a V2 infer body; also return which outputs were asked for in binary."""
    json_part: bytes | memoryview = body
    binary = memoryview(b"")
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError as exc:
            raise InvalidInput(
                f"Inference-Header-Content-Length is not an integer: {header_length!r}"
            ) from exc
        if not 0 < n <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes"
            )
        json_part, binary = memoryview(body)[:n], memoryview(body)[n:]
    check_json_depth(json_part)
    try:
        req = _decoder.decode(json_part)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid inference request: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # check_json_depth ran first; never trust one guard alone
        raise InvalidInput("the request body's JSON is nested too deeply") from exc
    if not req.inputs:
        raise InvalidInput("invalid inference request: 'inputs' is empty")
    _check_inputs(req.inputs, len(body))
    tensors = []
    offset = 0
    for inp in req.inputs:
        params = inp.parameters or {}
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidInput(
                    f"input '{inp.name}': binary_data_size {size!r} runs past the binary data sent"
                )
            tensors.append(
                decode_binary_tensor(
                    inp.name,
                    inp.datatype,
                    inp.shape,
                    binary[offset : offset + size],
                    params,
                    header_checked=True,
                )
            )
            offset += size
        elif inp.data is msgspec.UNSET:
            raise InvalidInput(f"input '{inp.name}' has neither 'data' nor 'binary_data_size'")
        else:
            tensors.append(
                decode_json_tensor(inp.name, inp.datatype, inp.shape, inp.data, params, header_checked=True)
            )
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data were sent that no input claims")
    req_params = req.parameters or {}
    want_binary = {}
    all_binary = bool(req_params.get("binary_data_output"))
    for out in req.outputs or []:
        want_binary[out.name] = bool((out.parameters or {}).get("binary_data", all_binary))
    request = InferenceRequest(
        inputs=tensors,
        id=req.id,
        parameters=req_params,
        outputs=[o.name for o in req.outputs] if req.outputs else None,
    )
    if all_binary and not req.outputs:
        want_binary["*"] = True
    return request, want_binary


def _check_inputs(inputs: list[_Input], body_size: int) -> None:
    """Names, datatypes and shapes, and what they would decode to, before any data is read."""
    seen: set[str] = set()
    decoded = 0
    for inp in inputs:
        if inp.name in seen:
            raise InvalidInput(f"input '{inp.name}' is given more than once; input names must be unique")
        seen.add(inp.name)
        decoded += decoded_nbytes(inp.name, inp.datatype, inp.shape)
    check_decoded_size(decoded, body_size)


def encode_response(resp: InferenceResponse, want_binary: dict[str, bool]) -> tuple[bytes, dict[str, str]]:
    """Return the body and extra headers of a V2 infer response."""
    outputs = []
    chunks: list[bytes] = []
    default_binary = want_binary.get("*", False)
    for t in resp.outputs:
        out: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        params = dict(t.parameters)
        if want_binary.get(t.name, default_binary):
            raw = encode_binary_data(t.data)
            params["binary_data_size"] = len(raw)
            chunks.append(raw)
        else:
            out["data"] = encode_json_data(t.data)
        if params:
            out["parameters"] = params
        outputs.append(out)
    body: dict[str, Any] = {"model_name": resp.model_name}
    if resp.model_version is not None:
        body["model_version"] = resp.model_version
    if resp.id is not None:
        body["id"] = resp.id
    if resp.parameters:
        body["parameters"] = resp.parameters
    body["outputs"] = outputs
    head = _encoder.encode(body)
    if not chunks:
        return head, {}
    return b"".join([head, *chunks]), {HEADER_LENGTH: str(len(head))}


def encode_json(value: Any) -> bytes:
    return _encoder.encode(value)


# --- endpoints ---------------------------------------------------------------------


def route(method: str, rest: str) -> tuple[Handler, dict[str, Any]]:
    """Route ``/v2/models/<rest>``: NAME[/versions/V][/ready|/infer]."""
    parts = rest.split("/")
    action = ""
    if parts[-1] in ("ready", "infer") and len(parts) > 1:
        action = parts.pop()
    params: dict[str, Any]
    if len(parts) == 3 and parts[1] == "versions":
        params = {"name": parts[0], "version": parts[2]}
    elif len(parts) == 1 and parts[0]:
        params = {"name": parts[0], "version": None}
    else:
        raise ModelNotFound(f"no endpoint at /v2/models/{rest}")
    handler, allowed = {"": (model_metadata, "GET"), "ready": (model_ready, "GET"), "infer": (infer, "POST")}[
        action
    ]
    if method != allowed:
        raise MethodNotAllowed(f"{method} is not allowed on /v2/models/{rest}")
    return handler, params


async def server_metadata(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, encode_json(dp.server_metadata()))


async def live(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, b'{"live":true}')


async def ready(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    ok = dp.ready()
    return HttpResponse(200 if ok else 503, b'{"ready":true}' if ok else b'{"ready":false}')


async def model_metadata(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, encode_json(dp.model_metadata(params["name"], params["version"])))


async def model_ready(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    ok = dp.model_ready(params["name"], params["version"])
    if ok:
        return HttpResponse(200, encode_json({"name": params["name"], "ready": True}))
    state, reason = dp.state(params["name"])  # why not: loading, unloaded, failed to load (and why)
    return HttpResponse(
        503, encode_json({"name": params["name"], "ready": False, "state": state, "reason": reason})
    )


async def infer(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    dp.check(params["name"], params["version"])  # an unknown model is a 404 before the body is read
    header_length = req.headers.get(HEADER_LENGTH)
    if len(req.body) > OFF_LOOP_BYTES:
        request, want_binary = await off_loop(decode_request, req.body, header_length)
    else:
        request, want_binary = decode_request(req.body, header_length)
    response = await dp.infer(params["name"], params["version"], request)
    if output_nbytes(response.outputs) > OFF_LOOP_BYTES:
        body, headers = await off_loop(encode_response, response, want_binary)
    else:
        body, headers = encode_response(response, want_binary)
    content_type = b"application/octet-stream" if headers else b"application/json"
    return HttpResponse(200, body, content_type, headers)
