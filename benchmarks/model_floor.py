"""Floors under any server of this model on this machine: what the model's own libraries cost.

Runs in the model's virtualenv (`.bench/venv-modelport`: the model's requirements, grpcio and modelport's
generated `inference` stubs), never in the harness's own interpreter.

    python model_floor.py load MODEL        import mlflow.pyfunc and load MODEL, with the garbage collector
                                            off as modelport's template runs; print as JSON the seconds it
                                            took and the wall-clock time when it was done, then exit at
                                            once (tearing down mlflow's objects takes another ~0.4 s)
    python model_floor.py grpc MODEL PORT   a grpc.aio server (uvloop) answering ModelInfer by calling the
                                            scikit-learn estimator in its own process: no workers, no
                                            checks beyond protobuf's, scikit-learn's finiteness check off

`load` is the floor under launch to ready: a server has to do at least this before it can answer. `grpc` is
the floor under a gRPC round trip through grpcio with this model's predict; serve_bench measures it with
the same h2load flags as the gRPC rows.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


def load(model: str) -> None:
    started = time.perf_counter()
    gc.disable()
    import mlflow.pyfunc

    mlflow.pyfunc.load_model(model)
    print(json.dumps({"load_s": time.perf_counter() - started, "loaded_at": time.time()}), flush=True)
    os._exit(0)


def serve_model_infer(
    port: int,
    infer: Callable[[bytes, Any], Awaitable[bytes]],
    ready: dict[str, Any],
    setup: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Answer /inference.GRPCInferenceService/ModelInfer with ``infer`` (raw bytes in and out) on grpc.aio
    and uvloop, modelport's loop (a bare server did 5.1k calls/s on it against 3.9k on asyncio's, 32
    streams, here), at 127.0.0.1:PORT; print ``ready`` as a JSON line once listening. Shared
    with grpc_client.py's bare servers (this module imports only the standard library at the top)."""
    import asyncio

    import grpc
    import uvloop

    async def serve() -> None:
        if setup is not None:
            await setup()
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print(json.dumps(ready), flush=True)
        await server.wait_for_termination()

    uvloop.install()
    asyncio.run(serve())


def grpc_server(model: str, port: int) -> None:
    import mlflow.sklearn
    import numpy as np
    import sklearn

    from modelport.protocols.proto import inference_pb2 as pb

    estimator = mlflow.sklearn.load_model(model)
    sklearn.set_config(assume_finite=True)

    async def infer(data: bytes, _context: object) -> bytes:
        request = pb.ModelInferRequest.FromString(data)
        x = np.array([[v for i in request.inputs for v in i.contents.fp64_contents]])
        reply = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        out = reply.outputs.add(name="predictions", datatype="INT64", shape=[1])
        out.contents.int64_contents.extend(estimator.predict(x).tolist())
        return reply.SerializeToString()

    # The framed size of the answer (5-byte gRPC prefix), for h2load's error count.
    sample = pb.ModelInferResponse(model_name="iris")
    sample.outputs.add(name="predictions", datatype="INT64", shape=[1]).contents.int64_contents.append(2)
    serve_model_infer(
        port, infer, {"floor_port": port, "response_frame_bytes": len(sample.SerializeToString()) + 5}
    )


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "load":
        load(argv[1])
        return 0
    if len(argv) == 3 and argv[0] == "grpc":
        grpc_server(argv[1], int(argv[2]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
