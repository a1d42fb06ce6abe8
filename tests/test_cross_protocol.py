"""One model, every protocol: the same inputs through V2 REST (JSON and binary), KServe V1,
MLflow's /invocations and gRPC (typed and raw, unary and streamed) give the same predictions,
and the same as the model loaded with mlflow, for an sklearn model, a pytorch model and a custom
pyfunc with a string column and params."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import httpx
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.conftest import Server
from tests.protocols.grpc_support import infer_request, outputs_of, stub

pytestmark = pytest.mark.slow

Columns = dict[str, np.ndarray]  # output name -> values, whatever the protocol


def v2_json(server: Server, model: str, inputs: list[dict[str, Any]], params: dict[str, Any]) -> Columns:
    body: dict[str, Any] = {"inputs": inputs}
    if params:
        body["parameters"] = params
    resp = httpx.post(f"{server.base}/v2/models/{model}/infer", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in resp.json()["outputs"]}


def v2_binary(
    server: Server, model: str, inputs: list[tuple[str, str, np.ndarray]], params: dict[str, Any]
) -> Columns:
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        wire = []
        for name, datatype, data in inputs:
            inp = httpclient.InferInput(name, list(data.shape), datatype)
            inp.set_data_from_numpy(data, binary_data=True)
            wire.append(inp)
        result = client.infer(model, wire, parameters=params or None)
        response = result.get_response()
        names = [o["name"] for o in response["outputs"]]
        outputs = [httpclient.InferRequestedOutput(n, binary_data=True) for n in names]
        result = client.infer(model, wire, outputs=outputs, parameters=params or None)
        assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
        return {n: result.as_numpy(n) for n in names}
    finally:
        client.close()


def grpc_ways(
    server: Server, model: str, inputs: list[tuple[str, str, np.ndarray]], params: dict[str, Any]
) -> dict[str, Columns]:
    """gRPC typed (the generated stub), raw (tritonclient's client) and streamed (tritonclient)."""
    typed = stub(server).ModelInfer(
        infer_request(model, [(n, d, list(a.shape), a) for n, d, a in inputs], parameters=params), timeout=60
    )
    assert not typed.raw_output_contents
    client = grpcclient.InferenceServerClient(url=server.grpc_target)
    try:
        wire = []
        for name, datatype, data in inputs:
            inp = grpcclient.InferInput(name, list(data.shape), datatype)
            inp.set_data_from_numpy(data)
            wire.append(inp)
        result = client.infer(model, wire, parameters=params or None)
        names = [o.name for o in result.get_response().outputs]
        answers: queue.Queue[Any] = queue.Queue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        client.async_stream_infer(model, wire, parameters=params or None)
        streamed, error = answers.get(timeout=60)
        client.stop_stream()
        assert error is None, error
        return {
            "grpc-typed": outputs_of(typed),
            "grpc-raw": {n: result.as_numpy(n) for n in names},
            "grpc-stream": {n: streamed.as_numpy(n) for n in names},
        }
    finally:
        client.close()


def post(server: Server, path: str, body: dict[str, Any]) -> Any:
    resp = httpx.post(f"{server.base}{path}", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


def text(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).ravel().tolist()]


def test_sklearn(iris_server: Server, iris_model: Path, iris_frame: pd.DataFrame) -> None:
    expected = np.asarray(mlflow.pyfunc.load_model(str(iris_model)).predict(iris_frame))
    columns = [(c, "FP64", iris_frame[c].to_numpy()) for c in iris_frame.columns]
    n = len(iris_frame)
    got: dict[str, Any] = {
        "v2-json": v2_json(
            iris_server,
            "iris",
            [{"name": c, "datatype": "FP64", "shape": [n], "data": a.tolist()} for c, _, a in columns],
            {},
        ),
        "v2-binary": v2_binary(iris_server, "iris", columns, {}),
        **grpc_ways(iris_server, "iris", columns, {}),
    }
    single = {way: next(iter(out.values())) for way, out in got.items()}
    single["v1"] = post(iris_server, "/v1/models/iris:predict", {"instances": iris_frame.to_numpy().tolist()})
    split = iris_frame.to_dict(orient="split", index=False)
    single["invocations"] = post(iris_server, "/invocations", {"dataframe_split": split})
    for way, values in single.items():
        assert np.asarray(values).ravel().tolist() == expected.tolist(), way


def test_pytorch(torch_server: Server, torch_model: Path) -> None:
    x = np.random.default_rng(7).random((5, 4), dtype=np.float32)
    expected = np.asarray(mlflow.pyfunc.load_model(str(torch_model)).predict(x))
    tensor = [("input-0", "FP32", x)]
    got: dict[str, Any] = {
        "v2-json": v2_json(
            torch_server,
            "torch",
            [{"name": "input-0", "datatype": "FP32", "shape": [5, 4], "data": x.ravel().tolist()}],
            {},
        ),
        "v2-binary": v2_binary(torch_server, "torch", tensor, {}),
        **grpc_ways(torch_server, "torch", tensor, {}),
    }
    single = {way: next(iter(out.values())) for way, out in got.items()}
    single["v1"] = post(torch_server, "/v1/models/torch:predict", {"instances": x.tolist()})
    single["invocations"] = post(torch_server, "/invocations", {"inputs": x.tolist()})
    for way, values in single.items():
        arr = np.asarray(values, dtype=np.float32)
        assert arr.shape == (5, 2), way
        np.testing.assert_array_equal(arr, expected, err_msg=way)


def test_custom_pyfunc_with_strings_and_params(custom_server: Server, custom_model: Path) -> None:
    frame = pd.DataFrame({"name": ["ann", "zoë", "bo"], "x": [1.5, -2.0, 0.25]})
    params = {"scale": 3.0, "prefix": "hi"}
    expected = mlflow.pyfunc.load_model(str(custom_model)).predict(frame, params=params)
    names = np.array([s.encode() for s in frame["name"]], dtype=object)
    columns = [("name", "BYTES", names), ("x", "FP64", frame["x"].to_numpy())]
    got: dict[str, Columns] = {
        "v2-json": v2_json(
            custom_server,
            "greeter",
            [
                {"name": "name", "datatype": "BYTES", "shape": [3], "data": frame["name"].tolist()},
                {"name": "x", "datatype": "FP64", "shape": [3], "data": frame["x"].tolist()},
            ],
            params,
        ),
        "v2-binary": v2_binary(custom_server, "greeter", columns, params),
        **grpc_ways(custom_server, "greeter", columns, params),
    }
    records = frame.to_dict(orient="records")
    v1 = post(custom_server, "/v1/models/greeter:predict", {"instances": records, "params": params})
    split = frame.to_dict(orient="split", index=False)
    invocations = post(custom_server, "/invocations", {"dataframe_split": split, "params": params})
    for way, rows in (("v1", v1), ("invocations", invocations)):
        got[way] = {k: np.asarray([r[k] for r in rows]) for k in ("greeting", "score")}
    for way, out in got.items():
        assert text(out["greeting"]) == expected["greeting"].tolist(), way
        assert np.asarray(out["score"], dtype=np.float64).ravel().tolist() == expected["score"].tolist(), way
