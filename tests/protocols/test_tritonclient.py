"""Protocol conformance from an external V2 client: NVIDIA's tritonclient over HTTP,
with JSON and binary tensor data in both directions.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def client(iris_server):  # type: ignore[no-untyped-def]
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{iris_server.port}")
    yield c
    c.close()


def test_health_and_metadata(client) -> None:  # type: ignore[no-untyped-def]
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    meta = client.get_model_metadata("iris")
    assert [i["name"] for i in meta["inputs"]] == COLUMNS
    assert client.get_server_metadata()["name"] == "modelport"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_columns(client, iris_model: Path, iris_frame: pd.DataFrame, binary: bool) -> None:  # type: ignore[no-untyped-def]
    inputs = []
    for c in COLUMNS:
        inp = httpclient.InferInput(c, [len(iris_frame)], "FP64")
        inp.set_data_from_numpy(iris_frame[c].to_numpy(), binary_data=binary)
        inputs.append(inp)
    meta = client.get_model_metadata("iris")
    out_name = meta["outputs"][0]["name"]
    outputs = [httpclient.InferRequestedOutput(out_name, binary_data=binary)]
    result = client.infer("iris", inputs, outputs=outputs, request_id="t-1")
    expected = np.asarray(mlflow.pyfunc.load_model(str(iris_model)).predict(iris_frame))
    np.testing.assert_array_equal(result.as_numpy(out_name), expected)
    assert result.get_response()["id"] == "t-1"


def test_infer_one_tensor_binary(client, iris_model: Path, iris_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    x = iris_frame.to_numpy()
    inp = httpclient.InferInput("x", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=True)
    result = client.infer("iris", [inp])
    out = result.get_response()["outputs"][0]["name"]
    expected = np.asarray(mlflow.pyfunc.load_model(str(iris_model)).predict(iris_frame))
    np.testing.assert_array_equal(result.as_numpy(out), expected)


def test_bytes_tensors_binary(custom_server) -> None:  # type: ignore[no-untyped-def]
    c = httpclient.InferenceServerClient(url=f"127.0.0.1:{custom_server.port}")
    try:
        name = httpclient.InferInput("name", [2], "BYTES")
        name.set_data_from_numpy(np.array([b"ann", "zoë".encode()], dtype=object), binary_data=True)
        x = httpclient.InferInput("x", [2], "FP64")
        x.set_data_from_numpy(np.array([1.0, 2.0]), binary_data=True)
        outputs = [httpclient.InferRequestedOutput("greeting", binary_data=True)]
        result = c.infer("greeter", [name, x], outputs=outputs)
        assert result.as_numpy("greeting").tolist() == [b"hello ann", "hello zoë".encode()]
    finally:
        c.close()


def test_errors_surface_as_client_exceptions(client) -> None:  # type: ignore[no-untyped-def]
    inp = httpclient.InferInput("sepal_length", [1], "FP64")
    inp.set_data_from_numpy(np.array([1.0]))
    with pytest.raises(InferenceServerException, match="missing required input column"):
        client.infer("iris", [inp])
    with pytest.raises(InferenceServerException, match="not served here"):
        client.infer("nope", [inp])
