"""The Pod renderer used by the pod tests, checked against KServe's shipped manifests (no podman)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import REPO
from tests.deploy.kserve_pods import (
    Cluster,
    fill_placeholders,
    load_config,
    load_yaml,
    merge_container,
    render_pod,
)

SPECS = REPO.parent / "shared" / "specs" / "kserve"

pytestmark = pytest.mark.skipif(not SPECS.is_dir(), reason="../shared/specs/kserve not beside the repository")


def cluster() -> Cluster:
    secret = {
        "metadata": {"name": "s3", "annotations": {"serving.kserve.io/s3-endpoint": "minio.local:9000"}},
        "stringData": {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "S3_USE_HTTPS": "0"},
    }
    return Cluster(
        runtimes=[
            load_yaml(REPO / "deploy" / "kserve" / "servingruntime.yaml"),
            load_yaml(REPO / "deploy" / "kserve" / "servingruntime-multimodel.yaml"),
            load_yaml(SPECS / "runtimes" / "kserve-mlserver.yaml"),
        ],
        storage_containers=[load_yaml(REPO / "deploy" / "kserve" / "storagecontainer.yaml")],
        config=load_config(SPECS / "configmap" / "inferenceservice.yaml"),
        secrets={"s3": secret},
        service_accounts={"default": {"secrets": [{"name": "s3"}]}},
    )


def isvc(uri: str | None, runtime: str, **model: Any) -> dict[str, Any]:
    spec = {"modelFormat": {"name": "mlflow"}, "runtime": runtime, **model}
    if uri is not None:
        spec["storageUri"] = uri
    return {
        "metadata": {"name": "iris", "namespace": "ns"},
        "spec": {"predictor": {"storageContainerName": "modelport", "model": spec}},
    }


def test_placeholders_follow_go_templates() -> None:
    meta = {"name": "iris", "labels": {"a": "1"}}
    got = fill_placeholders({"args": ["--n={{.Name}}", "{{ .Labels.a }}", "{{.Labels.missing}}"]}, meta)
    assert got["args"] == ["--n=iris", "1", "<no value>"]


def test_strategic_merge_keys_env_by_name_and_replaces_other_lists() -> None:
    base = {"env": [{"name": "A", "value": "1"}], "args": ["x"], "resources": {"limits": {"cpu": "1"}}}
    over = {"env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}], "args": ["y"]}
    got = merge_container(base, {**over, "resources": {"requests": {"cpu": "1"}}})
    assert got["env"] == [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}]
    assert got["args"] == ["y"] and got["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}


def test_modelport_runtime_pod() -> None:
    pod = render_pod(isvc("s3://b/m", "modelport-mlflow"), cluster())
    (init,) = pod["spec"]["initContainers"]
    (server,) = pod["spec"]["containers"]
    assert init["command"] == ["modelport", "storage-initializer"] and init["args"] == [
        "s3://b/m",
        "/mnt/models",
    ]
    env = {e["name"]: e for e in init["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "AWS_ACCESS_KEY_ID"}
    assert env["S3_ENDPOINT"]["value"] == "minio.local:9000" and env["S3_USE_HTTPS"]["value"] == "0"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.local:9000"
    assert server["args"][:2] == ["serve", "--model_name=iris"]
    assert {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True} in server[
        "volumeMounts"
    ]
    assert {"name": "INFERENCE_SERVICE_NAME", "value": "iris"} in server["env"]
    assert "tcpSocket" not in server["readinessProbe"]  # the runtime declares its own


def test_kserve_mlserver_pod_gets_the_mlserver_variables() -> None:
    pod = render_pod(isvc("s3://b/m", "kserve-mlserver"), cluster())
    (server,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["MLSERVER_MODEL_NAME"] == "iris" and env["MLSERVER_MODEL_URI"] == "/mnt/models"
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_mlflow.MLflowRuntime"
    assert server["readinessProbe"] == {
        "tcpSocket": {"port": 8080},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def test_modelcar_pod() -> None:
    pod = render_pod(isvc("oci://reg/model:1", "modelport-mlflow"), cluster())
    spec = pod["spec"]
    assert spec["shareProcessNamespace"] is True
    server, car = spec["containers"]
    assert car["name"] == "modelcar" and car["image"] == "reg/model:1"
    assert car["args"][-1] == "ln -sf /proc/$$$$/root/models /mnt/models && sleep infinity"
    assert {"name": "MODEL_INIT_MODE", "value": "async"} in server["env"]
    assert {"name": "kserve-provision-location", "mountPath": "/mnt", "readOnly": False} in server[
        "volumeMounts"
    ]
    assert spec["initContainers"][0]["name"] == "modelcar-init"


def test_runtime_version_replaces_the_image_tag() -> None:
    pod = render_pod(isvc("s3://b/m", "modelport-mlflow", runtimeVersion="dev-torch"), cluster())
    assert pod["spec"]["containers"][0]["image"] == "modelport:dev-torch"


def test_multi_model_pod_gets_the_agent_and_the_shared_model_dir() -> None:
    """No storageUri: KServe's IsMMSPredictor, so the agent sidecar and its volumes (agent_injector.go)."""
    pod = render_pod(isvc(None, "modelport-mlflow-multimodel"), cluster())
    spec = pod["spec"]
    assert "initContainers" not in spec  # the storage initializer is never injected beside the agent
    server, agent = spec["containers"]
    assert (server["name"], agent["name"]) == ("kserve-container", "agent")
    assert server["args"] == [
        "serve",
        "--model-repository=/mnt/models",
        "--load-models-at-startup=true",
        "--http_port=8080",
        "--grpc_port=8081",
    ]
    assert agent["args"] == [
        "--enable-puller",
        "--config-dir",
        "/mnt/configs",
        "--model-dir",
        "/mnt/models",
        "--component-port",
        "8080",
    ]
    assert agent["image"] == "kserve/agent:latest"
    assert agent["ports"] == [{"name": "agent-port", "containerPort": 9081, "protocol": "TCP"}]
    assert agent["securityContext"] == server["securityContext"]
    assert agent["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    env = {e["name"]: e for e in agent["env"]}
    assert json.loads(env["SERVING_READINESS_PROBE"]["value"]) == server["readinessProbe"]
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.local:9000"
    assert spec["volumes"] == [
        {"name": "model-dir", "emptyDir": {}},
        {"name": "model-config", "configMap": {"name": "modelconfig-iris-0"}},
    ]
    assert server["volumeMounts"] == [{"name": "model-dir", "readOnly": False, "mountPath": "/mnt/models"}]
    assert agent["volumeMounts"] == [
        {"name": "model-dir", "readOnly": False, "mountPath": "/mnt/models"},
        {"name": "model-config", "readOnly": False, "mountPath": "/mnt/configs"},
    ]
    assert pod["metadata"]["annotations"]["internal.serving.kserve.io/agent"] == "true"


def test_a_storage_uri_means_no_agent() -> None:
    pod = render_pod(isvc("s3://b/m", "modelport-mlflow-multimodel"), cluster())
    assert [c["name"] for c in pod["spec"]["containers"]] == ["kserve-container"]
    assert "internal.serving.kserve.io/agent" not in pod["metadata"]["annotations"]
    assert pod["spec"]["initContainers"][0]["name"] == "storage-initializer"
