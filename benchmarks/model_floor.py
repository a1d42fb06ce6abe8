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


def load(model: str) -> None:
    started = time.perf_counter()
    gc.disable()
    import mlflow.pyfunc

    mlflow.pyfunc.load_model(model)
    print(json.dumps({"load_s": time.perf_counter() - started, "loaded_at": time.time()}), flush=True)
    os._exit(0)


def grpc_server(model: str, port: int) -> None:
    import asyncio

    import grpc
    import mlflow.sklearn
    import numpy as np
    import sklearn
    import uvloop

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

    async def serve() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        # The framed size of the answer (5-byte gRPC prefix), for h2load's error count.
        sample = pb.ModelInferResponse(model_name="iris")
        sample.outputs.add(name="predictions", datatype="INT64", shape=[1]).contents.int64_contents.append(2)
        size = len(sample.SerializeToString()) + 5
        print(json.dumps({"floor_port": port, "response_frame_bytes": size}), flush=True)
        await server.wait_for_termination()

    uvloop.install()
    asyncio.run(serve())


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
