"""The gRPC side of serve_bench: the ModelInfer request h2load replays, real-client checks, a bare server.

Runs in `.bench/venv-grpc-client` (`tritonclient[grpc]`, which brings grpcio, protobuf and the `inference`
protos as `tritonclient.grpc.service_pb2`, and uvloop for the bare server; serve_bench builds it), never in the
harness's own interpreter, which stays standard-library only.

    python grpc_client.py request OUT            write the framed request h2load replays; print its sizes
    python grpc_client.py check PORT REQUEST     one infer through tritonclient's InferenceServerClient and
                                                 one replay of REQUEST's exact bytes through grpcio; print
                                                 both predictions and the replayed response's frame size
    python grpc_client.py bare PORT              a grpc.aio server answering ModelInfer with a canned reply:
                                                 the ceiling of a Python grpcio server and of h2load here
    python grpc_client.py bare-round-trip PORT   the same, but each call first waits for one byte to come
                                                 back from an echo thread over a socketpair, as a call waits
                                                 for a worker: the ceiling of a front-and-workers design

The request: model "iris", four FP64 inputs of shape [1] named like the signature's columns, typed
`contents.fp64_contents` (what MLServer's mlflow runtime decodes into a one-row DataFrame; the gRPC twin of
loadgen.V2_BODY).
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import tritonclient.grpc as tc  # noqa: E402
from loadgen import COLUMNS, ROW  # noqa: E402
from model_floor import serve_model_infer  # noqa: E402
from tritonclient.grpc import service_pb2 as pb  # noqa: E402

MODEL = "iris"
METHOD = "/inference.GRPCInferenceService/ModelInfer"
# InferTensorContents field per datatype, for typed (non-raw) outputs.
_TYPED = {
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
_RAW = {
    "BOOL": "?",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def request_message() -> bytes:
    req = pb.ModelInferRequest(model_name=MODEL)
    for name, value in zip(COLUMNS, ROW, strict=True):
        tensor = req.inputs.add(name=name, datatype="FP64", shape=[1])
        tensor.contents.fp64_contents.append(value)
    return req.SerializeToString()


def frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: compressed flag 0, 4-byte big-endian length, the message."""
    return struct.pack(">BI", 0, len(message)) + message


def unframe(data: bytes) -> bytes:
    flag, length = struct.unpack(">BI", data[:5])
    if flag != 0 or length != len(data) - 5:
        raise ValueError(
            f"not one uncompressed gRPC message: flag {flag}, length {length}, {len(data)} bytes"
        )
    return data[5:]


def predictions(resp: pb.ModelInferResponse) -> list[object]:
    """The first output's values, typed or raw."""
    if not resp.outputs:
        raise ValueError("response has no outputs")
    out = resp.outputs[0]
    if resp.raw_output_contents:
        values = np.frombuffer(resp.raw_output_contents[0], dtype=_RAW[out.datatype])
        return values.tolist()
    return list(getattr(out.contents, _TYPED[out.datatype]))


def check(port: int, request_file: Path) -> dict[str, object]:
    target = f"127.0.0.1:{port}"
    out: dict[str, object] = {}
    # tritonclient, as users call it (inputs as raw_input_contents); retried while the port comes up.
    client = tc.InferenceServerClient(target)
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.is_model_ready(MODEL):
                break
        except tc.InferenceServerException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"gRPC: model {MODEL} not ready on {target} after 30 s")
        time.sleep(0.2)
    inputs = []
    for name, value in zip(COLUMNS, ROW, strict=True):
        tensor = tc.InferInput(name, [1], "FP64")
        tensor.set_data_from_numpy(np.array([value], dtype=np.float64))
        inputs.append(tensor)
    try:
        result = client.infer(MODEL, inputs, client_timeout=10)
        out["tritonclient"] = predictions(result.get_response())
    except (tc.InferenceServerException, ValueError, KeyError) as exc:
        out["tritonclient_error"] = str(exc)[:300]
    client.close()
    # The very bytes h2load sends (typed fp64_contents), through grpcio with no (de)serializer.
    message = unframe(request_file.read_bytes())
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        try:
            raw = call(message, timeout=10)
            out["replay"] = predictions(pb.ModelInferResponse.FromString(raw))
            out["response_frame_bytes"] = len(frame(raw))
        except grpc.RpcError as exc:
            out["replay_error"] = f"{exc.code().name}: {exc.details()}"[:300]
        except (ValueError, KeyError) as exc:
            out["replay_error"] = str(exc)[:300]
    return out


def bare(port: int, round_trip: bool = False) -> None:
    """ModelInfer answered with a fixed response (no model, no decoding): grpcio's own cost per call.

    With ``round_trip``, each call first awaits a future that a socket round trip resolves (one byte to an
    echo thread and back), the way modelport's handler awaits its worker's reply.
    """
    import asyncio
    import socket
    import threading
    from collections import deque

    reply = pb.ModelInferResponse(model_name=MODEL, model_version="1")
    tensor = reply.outputs.add(name="predictions", datatype="INT64", shape=[1])
    tensor.contents.int64_contents.append(2)
    raw = reply.SerializeToString()
    waiting: deque[asyncio.Future[None]] = deque()
    echo: list[asyncio.Transport] = []

    class Replies(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            for _ in data:
                waiting.popleft().set_result(None)

    def echo_thread(sock: socket.socket) -> None:
        while data := sock.recv(4096):
            sock.sendall(data)

    async def infer(_request: bytes, _context: object) -> bytes:
        if echo:
            future = asyncio.get_running_loop().create_future()
            waiting.append(future)
            echo[0].write(b"x")
            await future
        return raw

    async def connect_echo() -> None:
        ours, theirs = socket.socketpair()
        threading.Thread(target=echo_thread, args=(theirs,), daemon=True).start()
        transport, _ = await asyncio.get_running_loop().create_connection(Replies, sock=ours)
        echo.append(transport)

    ready = {"bare_port": port, "response_frame_bytes": len(frame(raw))}
    serve_model_infer(port, infer, ready, connect_echo if round_trip else None)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "request":
        message = request_message()
        Path(argv[1]).write_bytes(frame(message))
        print(json.dumps({"message_bytes": len(message), "frame_bytes": len(message) + 5}))
        return 0
    if len(argv) == 3 and argv[0] == "check":
        print(json.dumps(check(int(argv[1]), Path(argv[2]))))
        return 0
    if len(argv) == 2 and argv[0] in ("bare", "bare-round-trip"):
        bare(int(argv[1]), round_trip=argv[0] == "bare-round-trip")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
