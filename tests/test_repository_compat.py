"""One server, one --model-repository, four models saved by three MLflow generations, each in its
own environment (--env auto): an sklearn model saved by MLflow 1.30.1 on Python 3.10 (run in a uv
environment on Python 3.10), one saved by MLflow 2.9.2 with scikit-learn 1.3.2 (a uv environment on
3.11), a custom pyfunc with params and a PyTorch model saved by the server's MLflow 3.x (run in the
server's interpreter). All predict correctly over REST and gRPC at the same time."""

from __future__ import annotations

import concurrent.futures
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.envs.envs_support import OLD_STACK, base_python, run_script, uv_environ
from tests.protocols.grpc_support import infer_request, outputs_of, stub
from tests.repository_support import index, make_repository, serve_repository
from tests.runtime import mlflow1_support

pytestmark = pytest.mark.slow

PROBE = {"a": [0.1, -1.2, 2.5], "b": [1.0, 0.0, -0.5], "c": [0.3, 0.2, -2.0]}  # model_scripts' probe
TORCH_X = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 0.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def model_29(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """An sklearn model saved by MLflow 2.9.2 (uv venv), and what it predicts there."""
    from modelport.envs.build import uv_binary

    venv = tmp_path_factory.mktemp("saving") / "mlflow29"
    env = uv_environ()
    subprocess.run(
        [uv_binary(), "venv", "-q", "--python", str(base_python()), str(venv)], check=True, env=env
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [uv_binary(), "pip", "install", "-q", "--python", str(python), *OLD_STACK],
        check=True,
        env=env,
        timeout=600,
    )
    dest = tmp_path_factory.mktemp("models") / "m29"
    return dest, run_script(python, "save", str(dest), "optional")


@pytest.fixture(scope="module")
def model_1x(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """An sklearn model saved by MLflow 1.30.1 on Python 3.10, and its predictions for the probe."""
    python = mlflow1_support.make_venv(tmp_path_factory.mktemp("saving1x") / "venv")
    dest = tmp_path_factory.mktemp("models1x") / "m1x"
    return dest, mlflow1_support.save_model(python, dest)


@pytest.fixture(scope="module")
def torch_expected(torch_model: Path) -> np.ndarray:
    import mlflow.pyfunc

    return np.asarray(mlflow.pyfunc.load_model(str(torch_model)).predict(TORCH_X))


def test_three_mlflow_generations_in_one_server_over_rest_and_grpc(
    model_1x: tuple[Path, list[int]],
    model_29: tuple[Path, dict[str, Any]],
    custom_model: Path,
    torch_model: Path,
    torch_expected: np.ndarray,
    tmp_path: Path,
) -> None:
    m29, expected_29 = model_29
    assert expected_29["mlflow"] == "2.9.2"
    m1x, expected_1x = model_1x
    root = make_repository(tmp_path / "repo", sk1x=m1x, sk29=m29, greeter=custom_model, torch=torch_model)
    env = uv_environ()
    server = serve_repository(root, tmp=tmp_path, grpc=True, env=env, timeout=900)
    try:
        assert {n: s for n, (s, _) in index(server).items()} == {
            "sk1x": "READY",
            "sk29": "READY",
            "greeter": "READY",
            "torch": "READY",
        }
        runtimes = "\n".join(
            line for line in server.log().splitlines() if "worker" in line and "mlflow" in line
        )
        for runtime in ("python 3.10.13, mlflow 1.30.1", "mlflow 2.9.2", "mlflow 3."):
            assert runtime in runtimes, runtimes
        grpc_stub = stub(server)

        def sk_rest() -> None:
            inputs = [{"name": k, "datatype": "FP64", "shape": [3], "data": v} for k, v in PROBE.items()]
            resp = httpx.post(f"{server.base}/v2/models/sk29/infer", json={"inputs": inputs}, timeout=60)
            assert resp.status_code == 200, resp.text
            assert resp.json()["outputs"][0]["data"] == expected_29["pred"]

        def sk_grpc() -> None:
            msg = infer_request("sk29", [(k, "FP64", [3], v) for k, v in PROBE.items()])
            out = outputs_of(grpc_stub.ModelInfer(msg, timeout=60))
            assert next(iter(out.values())).tolist() == expected_29["pred"]

        columns = mlflow1_support.COLUMNS
        probe_1x = np.asarray(mlflow1_support.PROBE)

        def sk1x_rest() -> None:
            inputs = [
                {"name": c, "datatype": "FP64", "shape": [3], "data": probe_1x[:, i].tolist()}
                for i, c in enumerate(columns)
            ]
            resp = httpx.post(f"{server.base}/v2/models/sk1x/infer", json={"inputs": inputs}, timeout=60)
            assert resp.status_code == 200, resp.text
            assert resp.json()["outputs"][0]["data"] == expected_1x

        def sk1x_grpc() -> None:
            msg = infer_request("sk1x", [(c, "FP64", [3], probe_1x[:, i]) for i, c in enumerate(columns)])
            out = outputs_of(grpc_stub.ModelInfer(msg, timeout=60))
            assert next(iter(out.values())).tolist() == expected_1x

        def greeter_rest() -> None:
            body = {
                "inputs": [
                    {"name": "name", "datatype": "BYTES", "shape": [2], "data": ["ann", "bo"]},
                    {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, -2.0]},
                ],
                "parameters": {"scale": 3.0, "prefix": "hi"},
            }
            resp = httpx.post(f"{server.base}/v2/models/greeter/infer", json=body, timeout=60)
            assert resp.status_code == 200, resp.text
            got = {o["name"]: o["data"] for o in resp.json()["outputs"]}
            assert got == {"greeting": ["hi ann", "hi bo"], "score": [4.5, -6.0]}

        def greeter_grpc() -> None:
            msg = infer_request(
                "greeter",
                [("name", "BYTES", [1], [b"cy"]), ("x", "FP64", [1], [2.0])],
                parameters={"scale": 0.5, "prefix": "yo"},
            )
            out = outputs_of(grpc_stub.ModelInfer(msg, timeout=60))
            assert out["greeting"].tolist() == [b"yo cy"] and out["score"].tolist() == [1.0]

        def torch_rest() -> None:
            body = {
                "inputs": [
                    {"name": "input-0", "datatype": "FP32", "shape": [2, 4], "data": TORCH_X.ravel().tolist()}
                ]
            }
            resp = httpx.post(f"{server.base}/v2/models/torch/infer", json=body, timeout=60)
            assert resp.status_code == 200, resp.text
            got = np.asarray(resp.json()["outputs"][0]["data"], dtype=np.float32).reshape(
                torch_expected.shape
            )
            np.testing.assert_allclose(got, torch_expected, rtol=1e-5)

        def torch_grpc() -> None:
            msg = infer_request("torch", [("input-0", "FP32", [2, 4], TORCH_X)], raw=True)
            out = next(iter(outputs_of(grpc_stub.ModelInfer(msg, timeout=60)).values()))
            np.testing.assert_allclose(out, torch_expected, rtol=1e-5)

        calls = [
            sk1x_rest,
            sk1x_grpc,
            sk_rest,
            sk_grpc,
            greeter_rest,
            greeter_grpc,
            torch_rest,
            torch_grpc,
        ] * 8
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(c) for c in calls]:
                future.result()
    finally:
        server.stop()
