"""Helpers of the gRPC tests: an echo model, requests built with tritonclient's own messages
(``tritonclient.grpc.service_pb2``: a client's view of the wire), and REST's answer to the same
mistake for comparing messages."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.conftest import Server

CONTENTS_FIELD = {
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
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}

ECHO_CODE = textwrap.dedent(
    """
    import mlflow.pyfunc


    class Echo(mlflow.pyfunc.PythonModel):
        \"\"\"Returns what it is given: tensors in, the same tensors out.\"\"\"

        def predict(self, context, model_input, params=None):
            return model_input
    """
)


def save_echo_model(root: Path) -> Path:
    """A custom pyfunc without a signature that returns its input (sent with content_type np)."""
    import mlflow.pyfunc

    root.mkdir(parents=True, exist_ok=True)
    (root / "echo_model.py").write_text(ECHO_CODE)
    sys.path.insert(0, str(root))
    try:
        import echo_model

        path = root / "model"
        mlflow.pyfunc.save_model(
            path,
            python_model=echo_model.Echo(),
            code_paths=[str(root / "echo_model.py")],
            pip_requirements=["mlflow"],
        )
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("echo_model", None)
    return path


def stub(server: Server) -> service_pb2_grpc.GRPCInferenceServiceStub:
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_target))


def raw_bytes(datatype: str, data: np.ndarray) -> bytes:
    if datatype == "BYTES":
        items = [v if isinstance(v, bytes) else str(v).encode() for v in data.ravel().tolist()]
        return b"".join(len(v).to_bytes(4, "little") + v for v in items)
    return np.ascontiguousarray(data, dtype=NUMPY[datatype]).tobytes()


def infer_request(
    model: str,
    inputs: list[tuple[str, str, list[int], Any]],
    raw: bool = False,
    parameters: dict[str, Any] | None = None,
    outputs: list[str] | None = None,
    request_id: str = "",
) -> pb.ModelInferRequest:
    """A ModelInferRequest of (name, datatype, shape, data) inputs, typed or raw."""
    msg = pb.ModelInferRequest(model_name=model, id=request_id)
    for name, datatype, shape, data in inputs:
        inp = msg.inputs.add(name=name, datatype=datatype, shape=shape)
        arr = np.asarray(data, dtype=NUMPY[datatype])
        if raw:
            msg.raw_input_contents.append(raw_bytes(datatype, arr))
        elif datatype in CONTENTS_FIELD:  # FP16 has no typed field: left empty
            values = arr.ravel().tolist()
            if datatype == "BYTES":
                values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
            getattr(inp.contents, CONTENTS_FIELD[datatype]).extend(values)
    for key, value in (parameters or {}).items():
        p = msg.parameters[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int):
            p.int64_param = value
        elif isinstance(value, float):
            p.double_param = value
        else:
            p.string_param = value
    for name in outputs or []:
        msg.outputs.add(name=name)
    return msg


def outputs_of(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """Every output as an array, whether it came raw or typed."""
    out = {}
    for i, o in enumerate(response.outputs):
        shape = list(o.shape)
        if response.raw_output_contents:
            raw = response.raw_output_contents[i]
            if o.datatype == "BYTES":
                items, pos = [], 0
                while pos < len(raw):
                    n = int.from_bytes(raw[pos : pos + 4], "little")
                    items.append(raw[pos + 4 : pos + 4 + n])
                    pos += 4 + n
                arr = np.array(items, dtype=object)
            else:
                arr = np.frombuffer(raw, NUMPY[o.datatype])
        else:
            values = list(getattr(o.contents, CONTENTS_FIELD[o.datatype]))
            arr = np.array(values, dtype=NUMPY[o.datatype])
        out[o.name] = arr.reshape(shape)
    return out


def grpc_error(call: Any, request: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call that must fail."""
    try:
        call(request, **kwargs)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    raise AssertionError("the call succeeded")


def rest_error(
    server: Server, model: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """REST's status and message for the same request, as V2 JSON (a dict) or a binary body."""
    url = f"{server.base}/v2/models/{model}/infer"
    if isinstance(body, bytes):
        resp = httpx.post(url, content=body, headers=headers or {}, timeout=30)
    else:
        resp = httpx.post(url, json=body, timeout=30)
    return resp.status_code, resp.json()["error"]
