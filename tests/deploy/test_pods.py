"""The image in Pods built the way KServe builds them, run by ``podman kube play --network host``.

Each Pod is rendered (tests/deploy/kserve_pods.py) from the repository's manifests, KServe's
shipped runtimes and the controller's ConfigMap in ../shared/specs/kserve, against moto's S3 and
``mlflow server`` on loopback. `make pod-test` builds the images and runs these.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO
from tests.deploy.conftest import image_pins, tree, upload
from tests.deploy.kserve_pods import (
    AGENT,
    AGENT_PORT,
    CONFIG_VOLUME_ANNOTATION,
    MOUNT,
    Cluster,
    load_config,
    load_yaml,
    render_pod,
)
from tests.deploy.podman_kube import PlayedPod, image_exists, play, podman_ready
from tests.storage.storage_servers import AWS, Moto

pytestmark = [pytest.mark.pods, pytest.mark.slow]

IMAGE = os.environ.get("MODELPORT_IMAGE", "localhost/modelport:dev")
TORCH_IMAGE = os.environ.get("MODELPORT_TORCH_IMAGE", "localhost/modelport:dev-torch")
BUSYBOX = "localhost/modelport-busybox:bookworm"
# KServe's agent image (kserve/agent) is not here: a stand-in built from the modelport image.
AGENT_IMAGE = "localhost/modelport-kserve-agent:test"
AGENT_DIR = Path(__file__).parent / "agent"
SPECS = REPO.parent / "shared" / "specs" / "kserve"
KSERVE = REPO / "deploy" / "kserve"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Measured here and reported in the README (launch to ready, per pod).
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def podman_here() -> None:
    why = podman_ready()
    if why:
        pytest.skip(why)
    if not image_exists(IMAGE):
        pytest.skip(f"{IMAGE} not built: run `make image` (or `make pod-test`)")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pods")


@pytest.fixture(scope="module")
def agent_image() -> str:
    """The agent stand-in (tests/deploy/agent), rebuilt FROM the image under test: one COPY layer."""
    proc = subprocess.run(
        ["podman", "build", "-q", "--build-arg", f"IMAGE={IMAGE}", "-t", AGENT_IMAGE, str(AGENT_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return AGENT_IMAGE


# --- the cluster: manifests as shipped, images replaced ----------------------------------------


def with_image(obj: dict[str, Any], image: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    spec = obj["spec"]
    for container in spec.get("containers", []):
        container["image"] = image
    if "container" in spec:
        spec["container"]["image"] = image
    return obj


def s3_secret(moto: Moto) -> dict[str, Any]:
    """An S3 secret as KServe's docs write it: keys named by the ConfigMap, endpoint in annotations."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s3-creds",
            "annotations": {
                "serving.kserve.io/s3-endpoint": moto.url.removeprefix("http://"),
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-region": AWS["AWS_DEFAULT_REGION"],
            },
        },
        "stringData": {
            "AWS_ACCESS_KEY_ID": AWS["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": AWS["AWS_SECRET_ACCESS_KEY"],
        },
    }


def make_cluster(moto: Moto, image: str = IMAGE) -> Cluster:
    config = load_config(SPECS / "configmap" / "inferenceservice.yaml")
    config["agent"] = {**config["agent"], "image": AGENT_IMAGE}
    return Cluster(
        runtimes=[
            with_image(load_yaml(KSERVE / "servingruntime.yaml"), image),
            with_image(load_yaml(KSERVE / "servingruntime-multimodel.yaml"), image),
            with_image(load_yaml(SPECS / "runtimes" / "kserve-mlserver.yaml"), image),
        ],
        storage_containers=[with_image(load_yaml(KSERVE / "storagecontainer.yaml"), IMAGE)],
        config=config,
        secrets={"s3-creds": s3_secret(moto)},
        service_accounts={"default": {"secrets": [{"name": "s3-creds"}]}},
    )


def isvc(name: str, uri: str | None, runtime: str = "modelport-mlflow", **model: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"modelFormat": {"name": "mlflow"}, "runtime": runtime, **model}
    if uri is not None:
        spec["storageUri"] = uri
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {"predictor": {"storageContainerName": "modelport", "model": spec}},
    }


# --- servers and clients ------------------------------------------------------------------------


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def http(
    method: str, url: str, body: Any = None, timeout: float = 30, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def v2_columns(frame) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "inputs": [
            {"name": c, "datatype": "FP64", "shape": [len(frame)], "data": frame[c].tolist()} for c in COLUMNS
        ]
    }


def grpc_infer(port: int, name: str, inputs: list[tuple[str, np.ndarray, str]]) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        assert client.is_server_ready() and client.is_model_ready(name)
        tensors = []
        for tname, array, datatype in inputs:
            t = grpcclient.InferInput(tname, list(array.shape), datatype)
            t.set_data_from_numpy(array)
            tensors.append(t)
        result = client.infer(name, tensors)
        out = result.get_response().outputs[0].name
        return np.asarray(result.as_numpy(out))
    finally:
        client.close()


def metric(base: str, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def running(work: Path) -> Iterator[list[PlayedPod]]:
    """Pods a test started; taken down at the end whatever happened."""
    pods: list[PlayedPod] = []
    yield pods
    for pod in pods:
        pod.down()


def start(
    running: list[PlayedPod],
    work: Path,
    pod: dict[str, Any],
    ports: tuple[int, ...],
    moto: Moto,
    config_maps: dict[str, Any] | None = None,
) -> PlayedPod:
    config_maps = dict(config_maps or {})
    model_config = pod["metadata"]["annotations"].get(CONFIG_VOLUME_ANNOTATION)
    if model_config and model_config not in config_maps:
        # A multi-model pod: KServe's controller creates its ConfigMap with no TrainedModel yet.
        config_maps[model_config] = {"data": {"models.json": "[]"}}
    if any(c["name"] == AGENT for c in pod["spec"]["containers"]):
        ports = (*ports, AGENT_PORT)
    busy = [p for p in ports if not port_free(p)]
    assert not busy, f"ports {busy} are in use on 127.0.0.1: the pods use host networking"
    played = play(pod, work, {"s3-creds": s3_secret(moto)}, config_maps)
    running.append(played)
    return played


# --- models on S3 -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_models(moto: Moto, sklearn_model: Path) -> str:
    """s3://models/sk holds the model; s3://models/sk-old (a sibling prefix) must never be fetched."""
    client = moto.client()
    client.create_bucket(Bucket="models")
    upload(moto, "models", "sk", sklearn_model)
    client.put_object(Bucket="models", Key="sk-old/MLmodel", Body=b"not: this one\n")
    client.put_object(Bucket="models", Key="sk-old/stale.bin", Body=b"x" * 1000)
    return "s3://models/sk"


def expected_sklearn(sklearn_model: Path, frame) -> np.ndarray:  # type: ignore[no-untyped-def]
    import mlflow.pyfunc

    return np.asarray(mlflow.pyfunc.load_model(str(sklearn_model)).predict(frame))


def assert_sklearn_predictions(
    base: str, grpc_port: int | None, name: str, sklearn_model: Path, frame
) -> None:  # type: ignore[no-untyped-def]
    want = expected_sklearn(sklearn_model, frame)
    status, v1 = http("POST", f"{base}/v1/models/{name}:predict", {"instances": frame.to_numpy().tolist()})
    assert status == 200, v1
    assert np.asarray(v1["predictions"]).tolist() == want.tolist()
    status, v2 = http("POST", f"{base}/v2/models/{name}/infer", v2_columns(frame))
    assert status == 200, v2
    assert np.asarray(v2["outputs"][0]["data"]).tolist() == want.tolist()
    if grpc_port is not None:
        got = grpc_infer(grpc_port, name, [(c, frame[c].to_numpy(), "FP64") for c in COLUMNS])
        assert got.tolist() == want.tolist()


# --- the tests ------------------------------------------------------------------------------------


def test_s3_sklearn_pod_as_kserve_builds_it(
    moto: Moto, s3_models: str, sklearn_model: Path, iris_rows, work: Path, running: list[PlayedPod]
) -> None:  # type: ignore[no-untyped-def]
    access_log = [{"name": "MODELPORT_ACCESS_LOG", "value": "true"}]  # for the drain check below
    pod = render_pod(isvc("iris", s3_models, env=access_log), make_cluster(moto))
    spec = pod["spec"]
    (init,) = spec["initContainers"]
    (server,) = spec["containers"]
    # What KServe's webhook injects: SRC DEST args under the storage container's command, the
    # credentials as secretKeyRef, the endpoint from the secret's annotations, a read-only mount.
    assert (init["name"], init["command"], init["args"]) == (
        "storage-initializer",
        ["modelport", "storage-initializer"],
        [s3_models, MOUNT],
    )
    env = {e["name"]: e for e in init["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    assert env["AWS_ENDPOINT_URL"]["value"] == moto.url and env["S3_USE_HTTPS"]["value"] == "0"
    assert {"name": "kserve-provision-location", "mountPath": MOUNT, "readOnly": True} in server[
        "volumeMounts"
    ]
    assert {"name": "kserve-provision-location", "emptyDir": {}} in spec["volumes"]
    assert "--model_name=iris" in server["args"]
    assert {"name": "INFERENCE_SERVICE_NAME", "value": "iris"} in server["env"]
    assert pod["metadata"]["annotations"]["prometheus.kserve.io/path"] == "/metrics"

    played = start(running, work, pod, (8080, 8081), moto)
    TIMINGS["s3 sklearn (modelport runtime)"] = played.wait_ready()
    # The init container fetched exactly the model: the empty file kept, nothing of sk-old.
    listing = played.exec("kserve-container", "find", MOUNT, "-type", "f", "-printf", "%P %s\\n")
    got = dict(line.rsplit(" ", 1) for line in listing.splitlines())
    assert {k: int(v) for k, v in got.items()} == tree(sklearn_model)
    assert got["extra/empty.txt"] == "0"
    # Read-only for the server; a non-root numeric user; tini at PID 1.
    touch = subprocess.run(
        ["podman", "exec", played.container("kserve-container"), "touch", f"{MOUNT}/x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr
    assert played.exec("kserve-container", "id", "-u").strip() == "10001"
    assert played.exec("kserve-container", "cat", "/proc/1/cmdline").split("\0")[0].endswith("tini")
    # Every probe of the runtime passes.
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert played.probe("kserve-container", kind), kind
    _, frame = iris_rows[0], iris_rows[2]
    assert_sklearn_predictions("http://127.0.0.1:8080", 8081, "iris", sklearn_model, frame)
    assert_drains_on_kube_down(played, work, frame)


def assert_drains_on_kube_down(played: PlayedPod, work: Path, frame) -> None:  # type: ignore[no-untyped-def]
    """Pod termination while 4 clients keep sending: every request the server took is answered.

    "Took" is read from the server's access log (MODELPORT_ACCESS_LOG, one line per request with
    its X-Request-Id). A connection still in the kernel's accept queue when the listener closes is
    reset without the server having seen it, as with any server (Kubernetes removes the pod's
    endpoint as it sends SIGTERM, so clients go elsewhere): at most one per client, and never one
    the access log names.
    """
    body = {"instances": frame.to_numpy().tolist()}
    stop = threading.Event()
    outcome: dict[str, tuple[str, Any]] = {}

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            rid = f"drain-{n}-{i}"
            i += 1
            try:
                status, _ = http(
                    "POST",
                    "http://127.0.0.1:8080/v1/models/iris:predict",
                    body,
                    timeout=30,
                    headers={"X-Request-Id": rid},
                )
                outcome[rid] = ("answered", status)
            except urllib.error.URLError as exc:
                outcome[rid] = ("refused", str(exc.reason))  # listener closed: nothing sent
                time.sleep(0.05)
            except (ConnectionError, OSError) as exc:
                outcome[rid] = ("failed", repr(exc))
                time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client, n) for n in range(4)]
        time.sleep(1.0)
        took = played.down()
        stop.set()
        for f in futures:
            f.result()
    text = played.final_logs.get("kserve-container", "")
    taken = set(re.findall(r"modelport\.access.*request_id=(drain-\d+-\d+)", text))
    answered = {rid for rid, (kind, status) in outcome.items() if kind == "answered" and status == 200}
    failed = {rid: why for rid, (kind, why) in outcome.items() if kind == "failed"}
    assert answered and taken, f"{len(answered)} answered, {len(taken)} in the access log\n{text[-3000:]}"
    assert taken <= answered, f"taken but not answered: {sorted(taken - answered)[:5]}: {failed}"
    assert not set(failed) & taken and len(failed) <= 4, failed
    assert all(kind != "answered" or status == 200 for kind, status in outcome.values())
    assert "shutting down" in text, text[-3000:]
    assert played.exit_codes["kserve-container"] == "exited 0", played.exit_codes
    assert took < 25, f"the stop took {took:.1f} s: the server did not exit on SIGTERM"
    print(
        f"pods: drain: {len(answered)} answered, {len(failed)} reset before the server took them, stop {took:.1f} s"
    )


def test_kserve_mlserver_runtime_with_modelport_image(
    moto: Moto, s3_models: str, sklearn_model: Path, iris_rows, work: Path, running: list[PlayedPod]
) -> None:  # type: ignore[no-untyped-def]
    """Drop-in: KServe's shipped kserve-mlserver runtime, only its image replaced by modelport's."""
    pod = render_pod(isvc("iris-mls", s3_models, runtime="kserve-mlserver"), make_cluster(moto))
    (server,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert "args" not in server and "command" not in server
    assert env["MLSERVER_MODEL_NAME"] == "iris-mls" and env["MLSERVER_MODEL_URI"] == MOUNT
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_mlflow.MLflowRuntime"
    assert (env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"]) == ("8080", "9000")
    assert server["readinessProbe"]["tcpSocket"]["port"] == 8080  # KServe's default, no probe declared

    played = start(running, work, pod, (8080, 9000), moto)
    played.wait_ready()
    # KServe's default probe is TCP: it passes once the port is open, before the model is loaded;
    # until then modelport answers 503 (ModelNotReady), which is what a client sees meanwhile.
    deadline = time.monotonic() + 300
    while http("GET", "http://127.0.0.1:8080/v2/health/ready")[0] != 200:
        assert time.monotonic() < deadline, played.logs("kserve-container")[-3000:]
        time.sleep(0.5)
    TIMINGS["s3 sklearn (kserve-mlserver runtime)"] = time.monotonic() - played.started
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/iris-mls/ready"):
        assert http("GET", f"http://127.0.0.1:8080{path}")[0] == 200, path
    assert_sklearn_predictions("http://127.0.0.1:8080", 9000, "iris-mls", sklearn_model, iris_rows[2])
    logs = played.logs("kserve-container")
    assert logs.count("MLSERVER_MODEL_IMPLEMENTATION='mlserver_mlflow.MLflowRuntime' ignored") == 1, logs


@pytest.fixture(scope="module")
def registered_pytorch(mlflow_server: str, pytorch_model: Path) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    exp = client.create_experiment("pods")
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(pytorch_model), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("linear")
    version = client.create_model_version("linear", f"runs:/{run.info.run_id}/model", run.info.run_id)
    return f"models:/linear/{version.version}"


def test_registry_pytorch_pod(
    moto: Moto,
    mlflow_server: str,
    registered_pytorch: str,
    pytorch_model: Path,
    work: Path,
    running: list[PlayedPod],
) -> None:
    """models:/NAME/VERSION through `mlflow server`; the torch variant image via runtimeVersion."""
    if not image_exists(TORCH_IMAGE):
        pytest.skip(f"{TORCH_IMAGE} not built: `make pod-test` builds it (deploy/build-image.sh --torch)")
    import mlflow.pyfunc

    name = "linear"
    # runtimeVersion replaces the tag of the runtime's image (KServe's UpdateImageTag).
    model = isvc(name, registered_pytorch, runtimeVersion=TORCH_IMAGE.rsplit(":", 1)[1])
    pod = render_pod(model, make_cluster(moto))
    (server,) = pod["spec"]["containers"]
    assert server["image"] == TORCH_IMAGE
    (init,) = pod["spec"]["initContainers"]
    assert init["args"] == [registered_pytorch, MOUNT]
    assert {"configMapRef": {"name": "modelport-storage", "optional": True}} in init["envFrom"]
    storage_config = {"modelport-storage": {"data": {"MLFLOW_TRACKING_URI": mlflow_server}}}
    played = start(running, work, pod, (8080, 8081), moto, storage_config)
    TIMINGS["models:/ pytorch (modelport runtime, torch image)"] = played.wait_ready(timeout=600)
    listing = played.exec("kserve-container", "find", MOUNT, "-type", "f", "-printf", "%P %s\\n")
    got = {k: int(v) for k, v in (line.rsplit(" ", 1) for line in listing.splitlines())}
    assert got == tree(pytorch_model)
    assert got["data/model.pth"] > 0 and got["code/mymodule/__init__.py"] == 0
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    want = np.asarray(mlflow.pyfunc.load_model(str(pytorch_model)).predict(x))
    status, meta = http("GET", f"http://127.0.0.1:8080/v2/models/{name}")
    assert status == 200, meta
    tensor = meta["inputs"][0]["name"]
    status, v2 = http(
        "POST",
        f"http://127.0.0.1:8080/v2/models/{name}/infer",
        {"inputs": [{"name": tensor, "datatype": "FP32", "shape": [5, 4], "data": x.ravel().tolist()}]},
    )
    assert status == 200, v2
    np.testing.assert_allclose(np.asarray(v2["outputs"][0]["data"]).reshape(want.shape), want, rtol=1e-6)
    status, v1 = http("POST", f"http://127.0.0.1:8080/v1/models/{name}:predict", {"instances": x.tolist()})
    assert status == 200, v1
    np.testing.assert_allclose(np.asarray(v1["predictions"]), want, rtol=1e-6)
    np.testing.assert_allclose(grpc_infer(8081, name, [(tensor, x, "FP32")]), want, rtol=1e-6)
    assert "environment: auto:" in played.logs("kserve-container")


def test_modelcar_pod(
    moto: Moto, s3_models: str, sklearn_model: Path, iris_rows, work: Path, running: list[PlayedPod]
) -> None:  # type: ignore[no-untyped-def]
    """oci:// with enableModelcar: `modelport package --modelcar` image as a sidecar, shared PIDs."""
    base = BUSYBOX if image_exists(BUSYBOX) else None
    if base is None:
        pytest.skip(f"{BUSYBOX} not made: deploy/base/make-base.sh")
    image = "localhost/modelport-modelcar-iris:test"
    env = {**os.environ, **moto.env(), "MODELPORT_CACHE_DIR": str(work / "package-cache")}
    cmd = [str(Path(sys.executable).parent / "modelport"), "package", s3_models, "--modelcar", image]
    proc = subprocess.run([*cmd, "--base", base], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    files = subprocess.run(
        ["podman", "run", "--rm", image, "sh", "-c", "ls -A / && cd /models && ls -RA ."],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "MLmodel" in files and "sk-old" not in files

    pod = render_pod(isvc("iris-car", f"oci://{image}"), make_cluster(moto))
    spec = pod["spec"]
    assert spec["shareProcessNamespace"] is True
    names = [c["name"] for c in spec["containers"]]
    assert names == ["kserve-container", "modelcar"] and spec["initContainers"][0]["name"] == "modelcar-init"
    (server,) = [c for c in spec["containers"] if c["name"] == "kserve-container"]
    assert {"name": "MODEL_INIT_MODE", "value": "async"} in server["env"]
    assert server["securityContext"]["runAsUser"] == 1010  # uidModelcar of the ConfigMap
    played = start(running, work, pod, (8080, 8081), moto)
    TIMINGS["oci:// modelcar sklearn (modelport runtime)"] = played.wait_ready()
    assert_sklearn_predictions("http://127.0.0.1:8080", 8081, "iris-car", sklearn_model, iris_rows[2])
    logs = played.logs("kserve-container")
    assert "/mnt/models is a link to /proc/" in logs and "/root/models: serving it from there" in logs, logs[
        -3000:
    ]


def test_shared_cache_second_pod_downloads_nothing(
    moto: Moto,
    s3_models: str,
    iris_rows,
    sklearn_model: Path,
    work: Path,
    running: list[PlayedPod],
    agent_image: str,
) -> None:  # type: ignore[no-untyped-def]
    """The cache on a named volume shared by pods (a node's LocalModelCache): pod 2 fetches 0 bytes.

    No storageUri, so KServe also gives these pods its model agent (an empty models.json: it
    loads nothing); the stand-in plays it."""
    volume = "modelport-test-cache"
    subprocess.run(["podman", "volume", "rm", "-f", volume], capture_output=True, check=False)
    secret = {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}}
    key_id = {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}}
    env = [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": key_id},
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": secret},
        {"name": "AWS_ENDPOINT_URL", "value": moto.url},
        {"name": "AWS_DEFAULT_REGION", "value": AWS["AWS_DEFAULT_REGION"]},
    ]
    seen: list[tuple[float, str]] = []
    try:
        for n in (1, 2):
            model = isvc(f"cached{n}", None, env=env)
            model["spec"]["predictor"]["volumes"] = [
                {"name": "cache", "persistentVolumeClaim": {"claimName": volume}}
            ]
            model["spec"]["predictor"]["model"]["volumeMounts"] = [
                {"name": "cache", "mountPath": "/var/cache/modelport"}
            ]
            # No storageUri, so no init container: the server fetches the model itself. KServe appends
            # the predictor's args to the runtime's, and the last --model_dir wins.
            model["spec"]["predictor"]["model"]["args"] = [f"--model_dir={s3_models}"]
            pod = render_pod(model, make_cluster(moto))
            assert "initContainers" not in pod["spec"]
            played = start(running, work, pod, (8080, 8081), moto)
            TIMINGS[f"s3 sklearn, shared cache, pod {n}"] = played.wait_ready()
            fetched = metric("http://127.0.0.1:8080", "modelport_fetch_bytes_total", 'scheme="s3"')
            assert_sklearn_predictions(
                "http://127.0.0.1:8080", None, f"cached{n}", sklearn_model, iris_rows[2]
            )
            seen.append((fetched, played.logs("kserve-container")))
            played.down()
            running.remove(played)
    finally:
        subprocess.run(["podman", "volume", "rm", "-f", volume], capture_output=True, check=False)
    (first, log1), (second, log2) = seen
    assert first == sum(tree(sklearn_model).values()), log1[-2000:]
    assert second == 0.0 and "found in cache" in log2, log2[-2000:]


# --- multi-model serving: TrainedModels loaded by KServe's agent -----------------------------


@pytest.fixture(scope="module")
def s3_regression(moto: Moto, tmp_path_factory: pytest.TempPathFactory, iris_rows) -> tuple[str, Path]:  # type: ignore[no-untyped-def]
    """A second, different model (a regression on the same four columns) at s3://models/petal."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    frame, target, _ = iris_rows
    reg = LinearRegression().fit(frame, target.astype(float))
    path = tmp_path_factory.mktemp("reg") / "model"
    mlflow.sklearn.save_model(
        reg,
        path,
        signature=infer_signature(frame, reg.predict(frame)),
        pip_requirements=image_pins("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "cloudpickle"),
        serialization_format="cloudpickle",
    )
    client = moto.client()
    if "models" not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket="models")
    upload(moto, "models", "petal", path)
    return "s3://models/petal", path


def trained_models(*models: tuple[str, str]) -> dict[str, str]:
    """The modelconfig ConfigMap's data as KServe's TrainedModel controller writes it."""
    entries = [
        {"modelName": name, "modelSpec": {"storageUri": uri, "framework": "mlflow", "memory": "256Mi"}}
        for name, uri in models
    ]
    return {"models.json": json.dumps(entries)}


def wait_for(what: str, check: Any, played: PlayedPod, timeout: float = 180.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            logs = f"--- agent:\n{played.logs(AGENT)[-3000:]}\n--- server:\n{played.logs('kserve-container')[-4000:]}"
            raise AssertionError(f"{what}: not after {timeout:.0f} s\n{logs}")
        time.sleep(0.3)
    return time.monotonic() - start


def test_multi_model_pod_loads_and_unloads_trained_models_through_the_agent(
    moto: Moto,
    s3_models: str,
    s3_regression: tuple[str, Path],
    sklearn_model: Path,
    iris_rows,
    work: Path,
    running: list[PlayedPod],
    agent_image: str,
) -> None:  # type: ignore[no-untyped-def]
    """KServe's multi-model serving: an InferenceService with no storageUri on the multi-model
    runtime, TrainedModels added to and removed from its modelconfig ConfigMap; the agent (a
    stand-in doing what pkg/agent does) downloads each to /mnt/models/NAME and calls the V2
    repository load and unload endpoints of modelport, started on an empty /mnt/models."""
    import mlflow.pyfunc

    base = "http://127.0.0.1:8080"
    name = "mlflow-models"
    pod = render_pod(isvc(name, None, runtime="modelport-mlflow-multimodel"), make_cluster(moto))
    server, agent = pod["spec"]["containers"]
    assert (server["name"], agent["name"], agent["image"]) == ("kserve-container", AGENT, agent_image)
    assert "--model-repository=/mnt/models" in server["args"] and "initContainers" not in pod["spec"]
    config_map = f"modelconfig-{name}-0"
    assert pod["metadata"]["annotations"][CONFIG_VOLUME_ANNOTATION] == config_map

    played = start(running, work, pod, (8080, 8081), moto)
    TIMINGS["multi-model, empty repository (modelport multi-model runtime)"] = played.wait_ready()
    played.wait_ready(AGENT, timeout=60)
    assert http("POST", f"{base}/v2/repository/index")[1] == []

    frame = iris_rows[2]
    petal_uri, petal_path = s3_regression
    want = {
        "iris": expected_sklearn(sklearn_model, frame),
        "petal": np.asarray(mlflow.pyfunc.load_model(str(petal_path)).predict(frame)),
    }

    def ready(model: str) -> bool:
        return http("GET", f"{base}/v2/models/{model}/ready")[0] == 200

    def predicts(model: str) -> None:
        status, out = http("POST", f"{base}/v2/models/{model}/infer", v2_columns(frame))
        assert status == 200, out
        np.testing.assert_allclose(np.asarray(out["outputs"][0]["data"]), want[model].ravel(), rtol=1e-9)

    # TrainedModel "iris", then "petal": each an Add for the agent.
    played.update_config_map(config_map, trained_models(("iris", s3_models)))
    TIMINGS["multi-model, TrainedModel 1 downloaded and loaded"] = wait_for(
        "iris ready", lambda: ready("iris"), played
    )
    predicts("iris")
    played.update_config_map(config_map, trained_models(("iris", s3_models), ("petal", petal_uri)))
    TIMINGS["multi-model, TrainedModel 2 downloaded and loaded"] = wait_for(
        "petal ready", lambda: ready("petal"), played
    )
    for model in ("iris", "petal"):
        predicts(model)
    status, index = http("POST", f"{base}/v2/repository/index")
    assert status == 200 and sorted((m["name"], m["state"]) for m in index) == [
        ("iris", "READY"),
        ("petal", "READY"),
    ], index
    # Downloaded exactly where KServe's agent puts them, with its SUCCESS.<sha256> marker.
    listing = played.exec("kserve-container", "find", MOUNT, "-maxdepth", "2", "-printf", "%P\\n").split()
    assert {"iris/MLmodel", "petal/MLmodel"} <= set(listing)
    assert sum(p.startswith("iris/SUCCESS.") for p in listing) == 1 and "sk-old" not in listing

    # TrainedModel "iris" deleted: the agent removes its folder, then unloads it.
    played.update_config_map(config_map, trained_models(("petal", petal_uri)))
    wait_for("iris unloaded", lambda: not ready("iris"), played, timeout=60)
    status, out = http("POST", f"{base}/v2/models/iris/infer", v2_columns(frame))
    assert status == 503, (status, out)  # known, not loaded: ModelNotReady, naming the load endpoint
    status, index = http("POST", f"{base}/v2/repository/index", {"ready": True})
    assert [m["name"] for m in index] == ["petal"], index
    predicts("petal")  # the other one still serves
    assert http("GET", f"{base}/v2/health/ready")[0] == 200
    wait_for(
        "iris folder deleted",
        lambda: "iris" not in played.exec("kserve-container", "ls", MOUNT).split(),
        played,
        30,
    )
    logs = played.logs(AGENT)
    for line in (
        "Successfully loaded model iris",
        "Successfully loaded model petal",
        "Successfully unloaded model iris",
    ):
        assert line in logs, logs[-3000:]
    assert "Failed" not in logs, logs[-3000:]
    played.down()
    running.remove(played)
    assert played.exit_codes["kserve-container"] == "exited 0" and played.exit_codes[AGENT] == "exited 0", (
        played.exit_codes
    )


def test_image_refuses_a_python_it_lacks_with_a_clear_message(sklearn_model: Path, work: Path) -> None:
    """UV_PYTHON_DOWNLOADS=never: a model saved with Python 3.9 is not given a downloaded Python."""
    import shutil

    model = work / "py39-model"
    shutil.copytree(sklearn_model, model)
    (model / "python_env.yaml").write_text(
        "python: 3.9.18\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n"
    )
    os.chmod(model, 0o755)
    proc = subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{model}:/model:ro",
            IMAGE,
            "serve",
            "/model",
            "--env",
            "uv",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    assert "Python 3.9" in proc.stderr and "UV_PYTHON_DOWNLOADS=never" in proc.stderr, proc.stderr[-3000:]


def test_image_has_no_compiler_and_reports_its_size() -> None:
    for compiler in ("gcc", "cc", "c++", "clang"):
        proc = subprocess.run(
            ["podman", "run", "--rm", "--entrypoint", "sh", IMAGE, "-c", f"command -v {compiler}"],
            capture_output=True,
            check=False,
        )
        assert proc.returncode != 0, compiler
    size = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    TIMINGS["image size (MB)"] = int(size) / 1e6


def test_zz_report_timings() -> None:
    """Prints what the README reports (run with -s to see it)."""
    for key, value in TIMINGS.items():
        print(f"pods: {key}: {value:.1f}")
