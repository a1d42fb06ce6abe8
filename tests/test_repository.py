"""Several models in one server: a model repository, load and unload over REST and gRPC while
another model serves, draining on unload, least-recently-used unloading and memory given back."""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from pathlib import Path

import grpc
import httpx
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc import service_pb2_grpc as triton_grpc

from modelport.protocols.proto import inference_pb2 as pb
from tests.conftest import start_server
from tests.repository_support import (
    IRIS_INPUTS,
    Hammer,
    add_broken,
    index,
    iris_infer,
    make_repository,
    outputs,
    save_sleeper,
    serve_repository,
    tree_rss_bytes,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iris_expected(iris_model: Path) -> list[int]:
    """What mlflow itself predicts for IRIS_INPUTS."""
    import mlflow.pyfunc
    import pandas as pd

    frame = pd.DataFrame({t["name"]: t["data"] for t in IRIS_INPUTS})
    return [int(v) for v in mlflow.pyfunc.load_model(str(iris_model)).predict(frame)]


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sleeper(tmp_path_factory.mktemp("sleeper") / "sleeper")


def test_a_repository_serves_its_models_and_reports_the_broken_one(
    iris_model: Path, iris_expected: list[int], tmp_path: Path
) -> None:
    root = make_repository(tmp_path / "repo", a=iris_model, b=iris_model)
    add_broken(root)
    server = serve_repository(root, tmp=tmp_path)
    try:
        states = index(server)
        assert states["a"] == ("READY", "") and states["b"] == ("READY", "")
        state, reason = states["broken"]
        assert state == "UNAVAILABLE" and "model.pkl" in reason and "failed to load" in reason
        ready = httpx.get(f"{server.base}/v2/models/broken/ready", timeout=10)
        assert ready.status_code == 503 and "model.pkl" in ready.json()["reason"]
        # The server is ready: every model loaded at start-up is, and the broken one is reported.
        assert httpx.get(f"{server.base}/v2/health/ready", timeout=10).status_code == 200
        for name in ("a", "b"):
            assert outputs(iris_infer(server, name))["output-0"] == iris_expected
        broken = iris_infer(server, "broken")
        assert broken.status_code == 503 and "model.pkl" in broken.text
        assert iris_infer(server, "nope").status_code == 404
        # MLflow's /invocations serves a server's only model; with three it says what to use.
        inv = httpx.post(f"{server.base}/invocations", json={"inputs": [[1.0] * 4]}, timeout=10)
        assert inv.status_code == 404 and "/v2/models/NAME/infer" in inv.json()["message"]
        assert sorted(httpx.get(f"{server.base}/v1/models", timeout=10).json()["models"]) == ["a", "b"]
        ready_only = httpx.post(f"{server.base}/v2/repository/index", json={"ready": True}, timeout=10)
        assert sorted(m["name"] for m in ready_only.json()) == ["a", "b"]
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_several_uris_by_name_and_invocations_with_one(
    iris_model: Path, iris_expected: list[int], tmp_path: Path
) -> None:
    server = start_server(f"first={iris_model}", f"second={iris_model}", tmp=tmp_path)
    try:
        assert outputs(iris_infer(server, "second"))["output-0"] == iris_expected
        assert sorted(index(server)) == ["first", "second"]
    finally:
        server.stop()
    server = start_server(f"only={iris_model}", tmp=tmp_path)
    try:
        inv = httpx.post(
            f"{server.base}/invocations",
            json={
                "dataframe_split": {
                    "columns": [t["name"] for t in IRIS_INPUTS],
                    "data": [[5.1, 3.5, 1.4, 0.2]],
                }
            },
            timeout=10,
        )
        assert inv.status_code == 200 and inv.json()["predictions"] == iris_expected[:1]
        assert index(server) == {"only": ("READY", "")}
    finally:
        server.stop()


def test_load_and_unload_over_rest_and_grpc_while_another_model_serves(
    iris_model: Path, iris_expected: list[int], tmp_path: Path
) -> None:
    root = make_repository(tmp_path / "repo", hot=iris_model, cold=iris_model)
    server = serve_repository(
        root, "--load-models-at-startup", "false", tmp=tmp_path, grpc=True, expect_ready=True
    )
    try:
        assert index(server) == {"hot": ("UNAVAILABLE", "not loaded"), "cold": ("UNAVAILABLE", "not loaded")}
        assert iris_infer(server, "hot").status_code == 503
        load = httpx.post(f"{server.base}/v2/repository/models/hot/load", timeout=120)
        assert load.status_code == 200 and load.json() == {"name": "hot", "load": True}

        def send(client: httpx.Client) -> httpx.Response:
            return client.post(f"{server.base}/v2/models/hot/infer", json={"inputs": IRIS_INPUTS})

        triton = grpcclient.InferenceServerClient(server.grpc_target)
        channel = grpc.insecure_channel(server.grpc_target)
        stub = triton_grpc.GRPCInferenceServiceStub(channel)
        with Hammer(send, lambda r: r.status_code == 200 and outputs(r)["output-0"] == iris_expected) as hot:
            # REST: a model of the repository folder, then one from a URI given with the load.
            assert httpx.post(f"{server.base}/v2/repository/models/cold/load", timeout=120).status_code == 200
            uri = {"parameters": {"uri": str(iris_model)}}
            assert (
                httpx.post(
                    f"{server.base}/v2/repository/models/extra/load", json=uri, timeout=120
                ).status_code
                == 200
            )
            assert outputs(iris_infer(server, "extra"))["output-0"] == iris_expected
            # A reload from a broken URI fails and leaves the loaded copy serving.
            broken = {"parameters": {"uri": str(add_broken(tmp_path, "broken-copy"))}}
            reload = httpx.post(f"{server.base}/v2/repository/models/extra/load", json=broken, timeout=60)
            assert reload.status_code == 400 and "model.pkl" in reload.text
            assert index(server)["extra"] == ("READY", "")
            assert outputs(iris_infer(server, "extra"))["output-0"] == iris_expected
            # A reload from the same folder: the new copy serves, the old one is drained and stopped.
            assert (
                httpx.post(f"{server.base}/v2/repository/models/extra/load", timeout=120).status_code == 200
            )
            assert outputs(iris_infer(server, "extra"))["output-0"] == iris_expected
            assert (
                httpx.post(f"{server.base}/v2/repository/models/cold/unload", timeout=60).status_code == 200
            )
            assert index(server)["cold"] == ("UNAVAILABLE", "unloaded")
            # gRPC with Triton's client and messages: load (with a uri parameter), index, unload.
            triton.load_model("cold")
            assert triton.is_model_ready("cold")
            request = triton_pb.RepositoryModelLoadRequest(model_name="grpc-extra")
            request.parameters["uri"].string_param = str(iris_model)
            stub.RepositoryModelLoad(request, timeout=120)
            assert outputs(iris_infer(server, "grpc-extra"))["output-0"] == iris_expected
            listed = {
                m["name"]: m.get("state") for m in triton.get_model_repository_index(as_json=True)["models"]
            }
            assert listed == {"hot": "READY", "cold": "READY", "extra": "READY", "grpc-extra": "READY"}
            triton.unload_model("grpc-extra")
            # KServe's message names the model in field 1, where Triton's has the repository.
            kserve_style = pb.RepositoryModelUnloadRequest(repository_name="extra").SerializeToString()
            answer = channel.unary_unary("/inference.GRPCInferenceService/RepositoryModelUnload")(
                kserve_style, timeout=60
            )
            reply = pb.RepositoryModelUnloadResponse.FromString(answer)
            assert (reply.model_name, reply.isUnloaded) == ("extra", True)
            time.sleep(1.0)  # a little more load on the hot model after the last change
        assert hot.failures == [] and hot.ok > 20, (hot.ok, hot.failures[:3])
        states = index(server)
        assert states["grpc-extra"][0] == states["extra"][0] == "UNAVAILABLE"
        # Mistakes are the client's: 4xx and NOT_FOUND / INVALID_ARGUMENT, never a 500.
        assert httpx.post(f"{server.base}/v2/repository/models/nope/load", timeout=10).status_code == 404
        bad = httpx.post(f"{server.base}/v2/repository/models/x/load", content=b"{", timeout=10)
        assert bad.status_code == 400
        unknown = httpx.post(
            f"{server.base}/v2/repository/models/x/load", json={"parameters": {"config": "{}"}}, timeout=10
        )
        assert unknown.status_code == 400 and "'uri'" in unknown.text
        assert httpx.get(f"{server.base}/v2/repository/models/hot/load", timeout=10).status_code == 405
        with pytest.raises(grpc.RpcError) as info:
            stub.RepositoryModelLoad(triton_pb.RepositoryModelLoadRequest(model_name="nope"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        channel.close()
        triton.close()
    finally:
        server.stop()


def test_unload_answers_the_requests_in_flight_first(sleeper: Path, tmp_path: Path) -> None:
    server = start_server(f"slow={sleeper}", "--workers", "2", tmp=tmp_path)
    try:
        body = {
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [3.0]}],
            "parameters": {"sleep": 2.0},
        }
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            calls = [
                pool.submit(httpx.post, f"{server.base}/v2/models/slow/infer", json=body, timeout=60)
                for _ in range(2)
            ]
            time.sleep(0.7)  # both are with the workers now
            started = time.monotonic()
            unload = httpx.post(f"{server.base}/v2/repository/models/slow/unload", timeout=60)
            took = time.monotonic() - started
            answers = [c.result() for c in calls]
        assert unload.status_code == 200
        assert [outputs(a)["y"] for a in answers] == [[6.0], [6.0]]
        assert took > 0.5, "the unload returned before the requests in flight were answered"
        after = httpx.post(f"{server.base}/v2/models/slow/infer", json=body, timeout=10)
        assert after.status_code == 503 and "not loaded" in after.text
        # One model served and unloaded: the server is not ready until it is loaded again.
        assert httpx.get(f"{server.base}/v2/health/ready", timeout=10).status_code == 503
    finally:
        server.stop()


def test_least_recently_used_is_unloaded_and_reloaded_on_demand(
    iris_model: Path, iris_expected: list[int], tmp_path: Path
) -> None:
    root = make_repository(tmp_path / "repo", a=iris_model, b=iris_model)
    server = serve_repository(root, "--max-loaded-models", "1", "--request-timeout", "120", tmp=tmp_path)
    try:
        states = index(server)
        assert states["a"][0] == "READY" and states["b"][0] == "UNAVAILABLE"
        # The first request for b waits for its load, which makes room by unloading a.
        assert outputs(iris_infer(server, "b", timeout=150))["output-0"] == iris_expected
        states = index(server)
        assert states["b"] == ("READY", "")
        assert states["a"] == ("UNAVAILABLE", "unloaded to make room (--max-loaded-models)")
        assert outputs(iris_infer(server, "a", timeout=150))["output-0"] == iris_expected
        assert index(server)["b"][0] == "UNAVAILABLE"
    finally:
        server.stop()
    # A load that outlasts --request-timeout: the request gets 504, the load goes on.
    server = serve_repository(root, "--max-loaded-models", "1", "--request-timeout", "0.5", tmp=tmp_path)
    try:
        slow = iris_infer(server, "b")
        assert slow.status_code == 504 and "still loading" in slow.text
        wait_for(lambda: index(server)["b"][0] == "READY", 150, "b loaded after the request gave up")
        assert outputs(iris_infer(server, "b"))["output-0"] == iris_expected
    finally:
        server.stop()


def test_unload_gives_the_memory_back(iris_model: Path, tmp_path: Path) -> None:
    root = make_repository(tmp_path / "repo", base=iris_model, extra=iris_model)
    server = serve_repository(root, "--load-models-at-startup", "false", tmp=tmp_path)
    try:
        assert httpx.post(f"{server.base}/v2/repository/models/base/load", timeout=120).status_code == 200
        iris_infer(server, "base")
        before = tree_rss_bytes(server.proc.pid)
        assert httpx.post(f"{server.base}/v2/repository/models/extra/load", timeout=120).status_code == 200
        iris_infer(server, "extra")
        loaded = tree_rss_bytes(server.proc.pid)
        assert httpx.post(f"{server.base}/v2/repository/models/extra/unload", timeout=60).status_code == 200
        wait_for(lambda: tree_rss_bytes(server.proc.pid) < loaded, 30, "the model's workers gone")
        after = tree_rss_bytes(server.proc.pid)
        mib = 1 << 20
        print(
            f"RSS: before {before / mib:.0f} MiB, loaded {loaded / mib:.0f} MiB, after unload {after / mib:.0f} MiB"
        )
        assert loaded - before > 20 * mib, "the second model's workers should hold memory of their own"
        assert after <= before * 1.10, (before, loaded, after)
    finally:
        server.stop()


def test_kserve_agent_flow_on_an_empty_repository(
    iris_model: Path, iris_expected: list[int], tmp_path: Path
) -> None:
    """What KServe's model agent does for a TrainedModel (pkg/agent/puller.go): download into
    <model dir>/<name> (with its SUCCESS marker), POST .../load with "{}"; on removal, delete the
    folder, then POST .../unload with "{}". Only a 200 counts as success to it."""
    root = tmp_path / "mnt-models"
    root.mkdir()
    server = serve_repository(root, "--load-models-at-startup", "false", tmp=tmp_path)
    try:
        # An empty multi-model pod is ready: the agent loads into a running server.
        assert index(server) == {}
        shutil.copytree(iris_model, root / "tm-iris")
        (root / "tm-iris" / "SUCCESS.d41d8cd98f00b204e9800998ecf8427e").write_text("")
        load = httpx.post(f"{server.base}/v2/repository/models/tm-iris/load", content=b"{}", timeout=120)
        assert load.status_code == 200, load.text
        assert outputs(iris_infer(server, "tm-iris"))["output-0"] == iris_expected
        assert httpx.get(f"{server.base}/v2/health/ready", timeout=10).status_code == 200
        shutil.rmtree(root / "tm-iris")
        unload = httpx.post(f"{server.base}/v2/repository/models/tm-iris/unload", content=b"{}", timeout=60)
        assert unload.status_code == 200, unload.text
        assert iris_infer(server, "tm-iris").status_code == 503
        # A load the agent sends for a name it has not downloaded: a 404 naming the folder.
        missing = httpx.post(f"{server.base}/v2/repository/models/absent/load", content=b"{}", timeout=10)
        assert missing.status_code == 404 and str(root) in missing.text
    finally:
        server.stop()
