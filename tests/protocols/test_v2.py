"""Open Inference Protocol (V2) REST against a real modelport process and real models."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def column_inputs(frame: pd.DataFrame) -> list[dict]:
    return [
        {"name": c, "datatype": "FP64", "shape": [len(frame)], "data": frame[c].tolist()}
        for c in frame.columns
    ]


def infer(server, body: dict, model: str = "iris") -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(f"{server.base}/v2/models/{model}/infer", json=body, timeout=30)


def test_server_metadata_and_health(iris_server) -> None:  # type: ignore[no-untyped-def]
    meta = httpx.get(f"{iris_server.base}/v2").json()
    assert meta["name"] == "modelport"
    assert "binary_tensor_data" in meta["extensions"]
    assert httpx.get(f"{iris_server.base}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{iris_server.base}/v2/health/ready").json() == {"ready": True}
    ready = httpx.get(f"{iris_server.base}/v2/models/iris/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_model_metadata_comes_from_the_signature(iris_server) -> None:  # type: ignore[no-untyped-def]
    meta = httpx.get(f"{iris_server.base}/v2/models/iris").json()
    assert meta["name"] == "iris"
    assert [i["name"] for i in meta["inputs"]] == COLUMNS
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert meta["outputs"][0]["datatype"] == "INT64"


def test_infer_by_columns_equals_pyfunc(iris_server, iris_model: Path, iris_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    expected = mlflow.pyfunc.load_model(str(iris_model)).predict(iris_frame)
    resp = infer(iris_server, {"id": "req-1", "inputs": column_inputs(iris_frame)})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == "req-1" and body["model_name"] == "iris"
    (out,) = body["outputs"]
    assert out["datatype"] == "INT64" and out["shape"] == [len(iris_frame)]
    assert out["data"] == np.asarray(expected).tolist()
    meta = httpx.get(f"{iris_server.base}/v2/models/iris").json()
    assert out["name"] == meta["outputs"][0]["name"]


def test_infer_one_2d_tensor_maps_columns_by_position(
    iris_server, iris_model: Path, iris_frame: pd.DataFrame
) -> None:  # type: ignore[no-untyped-def]
    expected = mlflow.pyfunc.load_model(str(iris_model)).predict(iris_frame)
    x = iris_frame.to_numpy()
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    resp = infer(iris_server, body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"] == np.asarray(expected).tolist()


def test_integers_are_safely_widened_to_double(iris_server, iris_model: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.DataFrame([[5, 3, 1, 0], [7, 3, 5, 2]], columns=COLUMNS)
    expected = mlflow.pyfunc.load_model(str(iris_model)).predict(frame.astype("float64"))
    inputs = [{"name": c, "datatype": "INT64", "shape": [2], "data": frame[c].tolist()} for c in COLUMNS]
    resp = infer(iris_server, {"inputs": inputs})
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["data"] == np.asarray(expected).tolist()


def test_versioned_paths(iris_server) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.get(f"{iris_server.base}/v2/models/iris/versions/7")
    assert resp.status_code == 404
    assert "version '7'" in resp.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (
            {"inputs": [{"name": "sepal_length", "datatype": "BYTES", "shape": [1], "data": ["a"]}]},
            400,
            "missing required input column",
        ),
        (
            {
                "inputs": [
                    {
                        "name": c,
                        "datatype": "BYTES" if c == "sepal_width" else "FP64",
                        "shape": [1],
                        "data": ["x" if c == "sepal_width" else 1.0],
                    }
                    for c in COLUMNS
                ]
            },
            400,
            "'sepal_width' has datatype BYTES",
        ),
        (
            {"inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [3], "data": [1.0]}]},
            400,
            "has 1 elements but its shape [3] needs 3",
        ),
        ({"inputs": [{"name": "a", "datatype": "FP99", "shape": [1], "data": [1]}]}, 400, "unknown datatype"),
        ({"inputs": []}, 400, "'inputs' is empty"),
        ({"outputs": []}, 400, "inputs"),
        ({"inputs": [{"name": "a", "datatype": "FP64", "shape": "x", "data": [1]}]}, 400, "shape"),
    ],
)
def test_bad_requests_get_400_naming_the_problem(iris_server, body: dict, status: int, needle: str) -> None:  # type: ignore[no-untyped-def]
    resp = infer(iris_server, body)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]


def test_unparseable_body_unknown_model_and_method(iris_server) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.post(f"{iris_server.base}/v2/models/iris/infer", content=b"{not json", timeout=10)
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    resp = httpx.post(f"{iris_server.base}/v2/models/nope/infer", json={"inputs": []})
    assert resp.status_code == 404 and "'nope'" in resp.json()["error"]
    assert httpx.get(f"{iris_server.base}/v2/models/iris/infer").status_code == 405
    assert httpx.get(f"{iris_server.base}/nowhere").status_code == 404


def test_unknown_requested_output_is_400(iris_server, iris_frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    resp = infer(iris_server, {"inputs": column_inputs(iris_frame), "outputs": [{"name": "nope"}]})
    assert resp.status_code == 400 and "unknown output" in resp.json()["error"]


def test_custom_pyfunc_strings_params_and_optional_column(custom_server, custom_model: Path) -> None:  # type: ignore[no-untyped-def]
    frame = pd.DataFrame({"name": ["ann", "bo"], "x": [1.5, -2.0]})
    params = {"scale": 3.0, "prefix": "hi"}
    expected = mlflow.pyfunc.load_model(str(custom_model)).predict(frame, params=params)
    body = {
        "parameters": params,
        "inputs": [
            {
                "name": "name",
                "datatype": "BYTES",
                "shape": [2],
                "data": ["ann", "bo"],
                "parameters": {"content_type": "str"},
            },
            {"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, -2.0]},
        ],
    }
    resp = infer(custom_server, body, model="greeter")
    assert resp.status_code == 200, resp.text
    body_out = resp.json()
    outputs = {o["name"]: o for o in body_out["outputs"]}
    assert outputs["greeting"]["datatype"] == "BYTES"
    assert outputs["greeting"]["data"] == expected["greeting"].tolist() == ["hi ann", "hi bo"]
    assert outputs["score"]["data"] == expected["score"].tolist()
    assert body_out["parameters"]["content_type"] == "pd"


def test_custom_pyfunc_requested_outputs_and_unknown_param(custom_server) -> None:  # type: ignore[no-untyped-def]
    inputs = [
        {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["z"]},
        {"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]},
        {"name": "bonus", "datatype": "FP64", "shape": [1], "data": [2.0]},
    ]
    resp = infer(custom_server, {"inputs": inputs, "outputs": [{"name": "score"}]}, model="greeter")
    assert resp.status_code == 200, resp.text
    assert [o["name"] for o in resp.json()["outputs"]] == ["score"]
    assert resp.json()["outputs"][0]["data"] == [3.0]
    resp = infer(custom_server, {"inputs": inputs, "parameters": {"nope": 1}}, model="greeter")
    assert resp.status_code == 400 and "unknown parameter" in resp.json()["error"]


def test_torch_tensor_model(torch_server, torch_model: Path) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    expected = mlflow.pyfunc.load_model(str(torch_model)).predict(x)
    body = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [5, 4], "data": x.ravel().tolist()}]}
    resp = infer(torch_server, body, model="torch")
    assert resp.status_code == 200, resp.text
    (out,) = resp.json()["outputs"]
    assert out["datatype"] == "FP32" and out["shape"] == [5, 2]
    np.testing.assert_array_equal(np.asarray(out["data"], dtype=np.float32).reshape(5, 2), expected)


def test_torch_fp16_is_widened_and_wrong_shape_or_lossy_type_refused(torch_server) -> None:  # type: ignore[no-untyped-def]
    ok = {"inputs": [{"name": "input-0", "datatype": "FP16", "shape": [1, 4], "data": [0.5, 0.25, 1.0, 2.0]}]}
    assert infer(torch_server, ok, model="torch").status_code == 200
    bad_shape = {
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]
    }
    resp = infer(torch_server, bad_shape, model="torch")
    assert resp.status_code == 400 and "shape [1, 3]" in resp.json()["error"]
    lossy = {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]
    }
    resp = infer(torch_server, lossy, model="torch")
    assert resp.status_code == 400 and "FP32" in resp.json()["error"]
