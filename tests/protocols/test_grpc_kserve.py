"""KServe's own gRPC client (``kserve.InferenceGRPCClient``) against a real server.

kserve pins pandas and protobuf below this venv's, so it lives in a venv of its own that
``make setup-test`` builds (scripts/setup.d/grpc.sh); the client runs there as a subprocess
and prints what it got as JSON.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, Server

pytestmark = pytest.mark.slow

KSERVE_PYTHON = REPO / ".cache" / "kserve-venv" / "bin" / "python"

CLIENT = textwrap.dedent(
    """
    import asyncio, json, sys

    import numpy as np
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


    async def main(target, rows, names):
        client = InferenceGRPCClient(target, timeout=30, retries=0)
        out = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready("iris"),
        }
        for way in ("typed", "raw"):
            inputs = []
            for i, c in enumerate(COLUMNS):
                column = [r[i] for r in rows]
                inp = InferInput(c, [len(rows)], "FP64")
                if way == "raw":
                    inp.set_data_from_numpy(np.array(column, dtype=np.float64), binary_data=True)
                else:
                    inp.set_data_from_numpy(np.array(column, dtype=np.float64), binary_data=False)
                inputs.append(inp)
            response = await client.infer(InferRequest("iris", inputs, request_id=f"k-{way}"))
            out[way] = {
                "id": response.id,
                "outputs": {o.name: o.as_numpy().tolist() for o in response.outputs},
            }
        try:
            await client.infer(InferRequest("iris", inputs[:2]))
        except Exception as exc:  # grpc.aio.AioRpcError
            out["error"] = [exc.code().name, exc.details()]
        await client.close()
        print(json.dumps(out))


    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), None))
    """
)


def run_client(target: str, rows: list[list[float]]) -> dict[str, Any]:
    if not KSERVE_PYTHON.exists():
        pytest.skip("KServe's client venv is missing: run `make setup-test` (scripts/setup.d/grpc.sh)")
    proc = subprocess.run(
        [str(KSERVE_PYTHON), "-c", CLIENT, target, json.dumps(rows)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_kserve_grpc_client(iris_server: Server, iris_model: Path, iris_frame: pd.DataFrame) -> None:
    got = run_client(iris_server.grpc_target, iris_frame.to_numpy().tolist())
    assert (got["live"], got["ready"], got["model_ready"]) == (True, True, True)
    expected = np.asarray(mlflow.pyfunc.load_model(str(iris_model)).predict(iris_frame)).tolist()
    for way in ("typed", "raw"):
        assert got[way]["id"] == f"k-{way}"
        assert got[way]["outputs"] == {"output-0": expected}, way
    code, message = got["error"]
    assert code == "INVALID_ARGUMENT" and "missing required input column(s)" in message
