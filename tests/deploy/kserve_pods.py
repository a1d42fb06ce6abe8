"""Render the Pod that KServe would run for an InferenceService, from the same manifests a cluster holds.

Follows KServe's controller (RawDeployment mode) and its pod webhook, read from kserve/kserve:
- predictor.go / utils.go: the runtime's ``kserve-container`` merged with the predictor's model
  container (strategic merge; args appended), ``{{.Name}}``-style placeholders filled from the
  InferenceService's metadata (a missing key prints ``<no value>``, as Go's text/template does),
  ``INFERENCE_SERVICE_NAME`` on every container, ``spec.annotations`` of the runtime on the Pod;
- inference_service_defaults.go: for ``serving.kserve.io/server-type: mlserver`` runtimes,
  ``MLSERVER_MODEL_NAME`` / ``MLSERVER_MODEL_URI`` and the ``modelClass`` label;
- deployment_reconciler.go: a TCP readiness probe when the runtime has none;
- storage_initializer_injector.go + utils/storage.go: one ``storage-initializer`` init container
  with args ``SRC /mnt/models``, the ``kserve-provision-location`` emptyDir (read-only in the
  serving container unless ``storage.kserve.io/readonly: "false"``), S3 credentials of the
  service account's secrets as ``secretKeyRef`` env plus ``S3_ENDPOINT``/``AWS_ENDPOINT_URL``...
  from the secret's annotations, the ClusterStorageContainer merged over it; and for ``oci://``
  with ``enableModelcar``: the modelcar sidecar and init container, ``MODEL_INIT_MODE=async``,
  ``shareProcessNamespace`` and ``uidModelcar``;
- component.go (addAgentAnnotations) + utils.go (IsMMSPredictor) + agent_injector.go: a predictor
  with neither storageUri nor storage is a multi-model server, whatever its runtime: the model
  ``agent`` sidecar (``--enable-puller --config-dir /mnt/configs --model-dir /mnt/models
  --component-port PORT``, port 9081, the server's securityContext, S3 credentials, the server's
  readiness probe as ``SERVING_READINESS_PROBE``), the ``model-dir`` emptyDir at /mnt/models
  (read-write) in the agent and the server, and the ``modelconfig-NAME-0`` ConfigMap (the
  TrainedModels' ``models.json``) at /mnt/configs in the agent.
Test tooling: no Kubernetes client, plain dicts in and out.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

MOUNT = "/mnt/models"
VOLUME = "kserve-provision-location"
CONTAINER = "kserve-container"
INIT = "storage-initializer"
MLFLOW_MODEL_CLASS = "mlserver_mlflow.MLflowRuntime"
# Multi-model serving (KServe's constants.go).
AGENT = "agent"
AGENT_PORT = 9081
MODEL_DIR_VOLUME = "model-dir"
MODEL_CONFIG_VOLUME = "model-config"
MODEL_CONFIG_DIR = "/mnt/configs"
AGENT_ANNOTATION = "internal.serving.kserve.io/agent"
CONFIG_VOLUME_ANNOTATION = "internal.serving.kserve.io/configVolumeName"
CONFIG_PATH_ANNOTATION = "internal.serving.kserve.io/configMountPath"
MODEL_DIR_ANNOTATION = "internal.serving.kserve.io/modelDir"
# The PodSpec fields a PredictorSpec carries inline (besides containers, merged separately).
POD_SPEC_KEYS = {
    "volumes",
    "serviceAccountName",
    "securityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
    "imagePullSecrets",
    "shareProcessNamespace",
    "terminationGracePeriodSeconds",
    "hostNetwork",
    "initContainers",
    "dnsPolicy",
    "priorityClassName",
    "schedulerName",
    "runtimeClassName",
}
# Lists of a Container merged element by element in a strategic merge patch, and their keys.
MERGE_KEYS = {"env": "name", "volumeMounts": "mountPath", "ports": "containerPort"}


@dataclass
class Cluster:
    """What the controller reads besides the InferenceService."""

    runtimes: list[Obj]
    storage_containers: list[Obj]
    config: dict[str, Obj]  # inferenceservice-config, each key's JSON parsed
    secrets: dict[str, Obj] = field(default_factory=dict)
    service_accounts: dict[str, Obj] = field(default_factory=dict)


def load_config(path: Path) -> dict[str, Obj]:
    """The controller's ConfigMap, each data key's JSON parsed (``_example`` skipped)."""
    data = yaml.safe_load(path.read_text())["data"]
    return {k: json.loads(v) for k, v in data.items() if not k.startswith("_")}


def load_yaml(path: Path) -> Obj:
    return yaml.safe_load(path.read_text())


# --- merging, as Kubernetes' strategic merge patch does it for a Container -----------------------


def merge_container(base: Obj, overlay: Obj) -> Obj:
    """Strategic merge of ``overlay`` over ``base``: maps recursively, env/mounts/ports by key, other lists replaced."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if key in MERGE_KEYS and isinstance(value, list):
            out[key] = _merge_list(out.get(key) or [], value, MERGE_KEYS[key])
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_map(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_map(base: Obj, overlay: Obj) -> Obj:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = (
            _merge_map(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def _merge_list(base: list[Obj], overlay: list[Obj], key: str) -> list[Obj]:
    out = [copy.deepcopy(item) for item in base]
    for item in overlay:
        for i, existing in enumerate(out):
            if existing.get(key) == item.get(key):
                out[i] = _merge_map(existing, item)
                break
        else:
            out.append(copy.deepcopy(item))
    return out


def set_env(container: Obj, name: str, value: str) -> None:
    """Add or replace one variable (KServe's AddOrReplaceEnv / AddEnvVarToPodSpec)."""
    env = container.setdefault("env", [])
    for item in env:
        if item["name"] == name:
            item.clear()
            item.update(name=name, value=value)
            return
    env.append({"name": name, "value": value})


def add_env_if_absent(container: Obj, name: str, value: str) -> None:
    env = container.setdefault("env", [])
    if all(item["name"] != name for item in env):
        env.append({"name": name, "value": value})


# --- placeholders: Go's text/template over the InferenceService's ObjectMeta ---------------------

_FIELD = re.compile(r"\{\{\s*\.([A-Za-z]+)(?:\.([A-Za-z0-9_\-]+))?\s*\}\}")


def fill_placeholders(container: Obj, meta: Obj) -> Obj:
    """``{{.Name}}``, ``{{.Namespace}}``, ``{{.Labels.x}}``, ``{{.Annotations.x}}`` in every string."""
    fields = {
        "Name": meta.get("name", ""),
        "Namespace": meta.get("namespace", ""),
        "Labels": meta.get("labels") or {},
        "Annotations": meta.get("annotations") or {},
    }

    def value(m: re.Match[str]) -> str:
        if m[1] not in fields:
            raise ValueError(f"placeholder {m[0]!r}: ObjectMeta has no field {m[1]}")
        got = fields[m[1]]
        if m[2] is None:
            return str(got)
        return str(got[m[2]]) if m[2] in got else "<no value>"  # text/template's missing map key

    return json.loads(_FIELD.sub(value, json.dumps(container)))


# --- the controller: predictor Pod ----------------------------------------------------------------


def find_runtime(isvc: Obj, cluster: Cluster) -> Obj:
    name = isvc["spec"]["predictor"]["model"].get("runtime")
    if not name:
        raise ValueError(
            "this renderer needs spec.predictor.model.runtime (auto-selection is tested elsewhere)"
        )
    for runtime in cluster.runtimes:
        if runtime["metadata"]["name"] == name:
            return runtime
    raise ValueError(f"no ServingRuntime or ClusterServingRuntime named {name}")


def apply_runtime_defaults(isvc: Obj, runtime: Obj) -> Obj:
    """SetRuntimeDefaults: what the webhook adds to the InferenceService for the runtime's server type."""
    isvc = copy.deepcopy(isvc)
    server_type = (runtime["metadata"].get("annotations") or {}).get("serving.kserve.io/server-type", "")
    model = isvc["spec"]["predictor"]["model"]
    if server_type == "mlserver":
        model.setdefault("protocolVersion", "v2")
        env = model.setdefault("env", [])
        names = {e["name"] for e in env}
        if model.get("storageUri") or model.get("storage"):
            for name, value in (
                ("MLSERVER_MODEL_NAME", isvc["metadata"]["name"]),
                ("MLSERVER_MODEL_URI", MOUNT),
            ):
                if name not in names:
                    env.append({"name": name, "value": value})
        elif "MLSERVER_LOAD_MODELS_AT_STARTUP" not in names:
            env.append({"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"})
        model_class = (
            MLFLOW_MODEL_CLASS
            if model["modelFormat"]["name"] == "mlflow"
            else "mlserver_sklearn.SKLearnModel"
        )
        isvc["metadata"].setdefault("labels", {})["modelClass"] = model_class
    return isvc


def predictor_pod(isvc: Obj, cluster: Cluster) -> Obj:
    """The Pod of the predictor's Deployment, before the pod webhook injects storage."""
    runtime = find_runtime(isvc, cluster)
    isvc = apply_runtime_defaults(isvc, runtime)
    spec = runtime["spec"]
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    (runtime_container,) = [c for c in spec["containers"] if c["name"] == CONTAINER]
    # The predictor's model spec is a Container plus KServe's own fields, which are not merged.
    own = {"modelFormat", "runtime", "protocolVersion", "storageUri", "storage", "runtimeVersion"}
    overlay = {k: v for k, v in model.items() if k not in own}
    container = merge_container(runtime_container, overlay)
    container["args"] = list(runtime_container.get("args") or []) + list(overlay.get("args") or [])
    if not container["args"]:
        del container["args"]
    container["name"] = CONTAINER
    container = fill_placeholders(container, isvc["metadata"])
    if model.get("runtimeVersion") and "@sha256:" not in container["image"]:  # UpdateImageTag
        image = container["image"]
        tag = re.search(r":[\w.\-]*$", image)
        container["image"] = (image[: tag.start()] if tag else image) + ":" + model["runtimeVersion"]
    if "readinessProbe" not in container:  # deployment_reconciler.go: setDefaultPodSpec
        port = (container.get("ports") or [{"containerPort": 8080}])[0]["containerPort"]
        container["readinessProbe"] = {
            "tcpSocket": {"port": port},
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        }
    containers = [container] + [c for c in spec["containers"] if c["name"] != CONTAINER]
    for c in containers:
        set_env(c, "INFERENCE_SERVICE_NAME", isvc["metadata"]["name"])
    pod_spec: Obj = {k: copy.deepcopy(v) for k, v in predictor.items() if k in POD_SPEC_KEYS}
    for key in ("volumes", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        if key in spec and key not in pod_spec:
            pod_spec[key] = copy.deepcopy(spec[key])
    pod_spec["containers"] = containers
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    annotations = {
        **(spec.get("annotations") or {}),
        **(isvc["metadata"].get("annotations") or {}),
        **(predictor.get("annotations") or {}),
    }
    labels = {
        **(isvc["metadata"].get("labels") or {}),
        **(predictor.get("labels") or {}),
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"],
        "component": "predictor",
    }
    if model.get("storageUri"):
        annotations["serving.kserve.io/storage-initializer-sourceuri"] = model["storageUri"]
    if is_mms_predictor(predictor):  # addAgentAnnotations; the memory sharding gives shard 0 only
        annotations[AGENT_ANNOTATION] = "true"
        annotations[CONFIG_VOLUME_ANNOTATION] = model_config_name(isvc["metadata"]["name"])
        annotations[CONFIG_PATH_ANNOTATION] = MODEL_CONFIG_DIR
        annotations[MODEL_DIR_ANNOTATION] = MOUNT
    if predictor.get("storageContainerName"):
        annotations["serving.kserve.io/storage-container-name"] = predictor["storageContainerName"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{isvc['metadata']['name']}-predictor",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": pod_spec,
    }


def is_mms_predictor(predictor: Obj) -> bool:
    """IsMMSPredictor: a model with no storageUri, storage or storageUris (huggingface excepted)."""
    model = predictor.get("model") or {}
    if model.get("modelFormat", {}).get("name") == "huggingface":
        return False
    return not (model.get("storageUri") or model.get("storage") or predictor.get("storageUris"))


def model_config_name(isvc_name: str, shard: int = 0) -> str:
    """constants.ModelConfigName: the ConfigMap the TrainedModel controller writes models.json to."""
    return f"modelconfig-{isvc_name}-{shard}"


# --- the pod webhook: storage initializer, credentials, modelcars ----------------------------------


def storage_container_for(uri: str, name: str | None, cluster: Cluster) -> Obj | None:
    """GetStorageContainerSpec: the one named, else the first whose supportedUriFormats match."""
    for csc in cluster.storage_containers:
        spec = csc["spec"]
        if spec.get("disabled"):
            continue
        if name is not None:
            if csc["metadata"]["name"] == name:
                return spec
            continue
        for fmt in spec.get("supportedUriFormats", []):
            if ("prefix" in fmt and uri.startswith(fmt["prefix"])) or (
                "regex" in fmt and re.match(fmt["regex"], uri)
            ):
                return spec
    if name is not None:
        raise ValueError(f"no ClusterStorageContainer named {name}")
    return None


def inject_storage(pod: Obj, cluster: Cluster, namespace: str = "default") -> Obj:
    """What the webhook does to a predictor Pod that carries the storage-initializer source URI."""
    pod = copy.deepcopy(pod)
    annotations = pod["metadata"]["annotations"]
    uri = annotations.get("serving.kserve.io/storage-initializer-sourceuri")
    if not uri:
        return pod
    spec = pod["spec"]
    config = cluster.config["storageInitializer"]
    (user,) = [c for c in spec["containers"] if c["name"] == CONTAINER]
    if uri.startswith("oci://") and config.get("enableModelcar"):
        return _inject_modelcar(pod, user, uri[len("oci://") :], config)
    read_only = annotations.get("storage.kserve.io/readonly", "true") != "false"
    init: Obj = {
        "name": INIT,
        "image": config["image"],
        "args": [uri, MOUNT],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "limits": {"cpu": config["cpuLimit"], "memory": config["memoryLimit"]},
            "requests": {"cpu": config["cpuRequest"], "memory": config["memoryRequest"]},
        },
        "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT}],
    }
    user.setdefault("volumeMounts", []).append({"name": VOLUME, "mountPath": MOUNT, "readOnly": read_only})
    spec.setdefault("volumes", []).append({"name": VOLUME, "emptyDir": {}})
    _add_credentials(init, pod, cluster)
    storage = storage_container_for(uri, annotations.get("serving.kserve.io/storage-container-name"), cluster)
    if storage is not None:
        init = merge_container(init, storage["container"])
    for name, value in (
        ("HF_HUB_ENABLE_HF_TRANSFER", "1"),
        ("HF_XET_HIGH_PERFORMANCE", "1"),
        ("HF_XET_NUM_CONCURRENT_RANGE_GETS", "8"),
    ):
        add_env_if_absent(init, name, value)
    spec.setdefault("initContainers", []).append(init)
    return pod


def _add_credentials(init: Obj, pod: Obj, cluster: Cluster) -> None:
    """CreateSecretVolumeAndEnv for S3 secrets: the storageSecretName annotation, else the service account's."""
    creds = cluster.config.get("credentials", {})
    s3 = creds.get("s3", {})
    annotation = creds.get("storageSecretNameAnnotation")
    names: list[str]
    if annotation and annotation in pod["metadata"]["annotations"]:
        names = [pod["metadata"]["annotations"][annotation]]
    else:
        account = cluster.service_accounts.get(pod["spec"].get("serviceAccountName") or "default", {})
        names = [ref["name"] for ref in account.get("secrets", [])]
    for name in names:
        secret = cluster.secrets[name]
        data = {**(secret.get("data") or {}), **(secret.get("stringData") or {})}
        key_id = s3.get("s3AccessKeyIDName") or "awsAccessKeyID"
        secret_key = s3.get("s3SecretAccessKeyName") or "awsSecretAccessKey"
        if secret_key not in data:
            continue  # GCS, Azure, HTTPS, HDFS secrets: not needed by these tests
        env = [
            {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": name, "key": key_id}}},
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": name, "key": secret_key}},
            },
        ]
        env += _s3_env(secret, s3)
        init["env"] = _merge_list(init.get("env") or [], env, "name")


def _s3_env(secret: Obj, s3: Obj) -> list[Obj]:
    """BuildS3EnvVars: each value from the secret's annotation, else its data, else the ConfigMap."""
    annotations = secret.get("metadata", {}).get("annotations") or {}
    plain = {**(secret.get("stringData") or {})}

    def pick(annotation: str, data_key: str, config_key: str) -> str:
        full = f"serving.kserve.io/{annotation}"
        if full in annotations:
            return str(annotations[full])
        if data_key in plain:
            return str(plain[data_key])
        return str(s3.get(config_key) or "")

    env: list[Obj] = []
    endpoint = pick("s3-endpoint", "S3_ENDPOINT", "s3Endpoint").strip()
    if endpoint:
        if endpoint.lower().startswith("https://"):
            https, host, url = "1", endpoint[8:], endpoint
        elif endpoint.lower().startswith("http://"):
            https, host, url = "0", endpoint[7:], endpoint
        else:
            https = pick("s3-usehttps", "S3_USE_HTTPS", "s3UseHttps")
            host, url = endpoint, ("http://" if https == "0" else "https://") + endpoint
        if https:
            env.append({"name": "S3_USE_HTTPS", "value": https})
        env += [{"name": "S3_ENDPOINT", "value": host}, {"name": "AWS_ENDPOINT_URL", "value": url}]
    for annotation, name, config_key in (
        ("s3-verifyssl", "S3_VERIFY_SSL", "s3VerifySSL"),
        ("s3-useanoncredential", "awsAnonymousCredential", "s3UseAnonymousCredential"),
        ("s3-region", "AWS_DEFAULT_REGION", "s3Region"),
        ("s3-usevirtualbucket", "S3_USER_VIRTUAL_BUCKET", "s3UseVirtualBucket"),
        ("s3-useaccelerate", "S3_USE_ACCELERATE", "s3UseAccelerate"),
        ("s3-cabundle", "AWS_CA_BUNDLE", "s3CABundle"),
        ("s3-cabundle-configmap", "AWS_CA_BUNDLE_CONFIGMAP", "s3CABundleConfigMap"),
    ):
        value = pick(annotation, name, config_key)
        if value:
            env.append({"name": name, "value": value})
    return env


def _inject_modelcar(pod: Obj, user: Obj, image: str, config: Obj) -> Obj:
    """ConfigureModelcarToContainer: the model image as a sidecar linking /mnt/models into its root."""
    spec = pod["spec"]
    set_env(user, "MODEL_INIT_MODE", "async")
    parent = MOUNT.rsplit("/", 1)[0] or "/"
    if all(v["name"] != VOLUME for v in spec.get("volumes", [])):
        spec.setdefault("volumes", []).append({"name": VOLUME, "emptyDir": {}})
    if all(m["mountPath"] != parent for m in user.get("volumeMounts", [])):
        user.setdefault("volumeMounts", []).append({"name": VOLUME, "mountPath": parent, "readOnly": False})
    uid = config.get("uidModelcar")
    if uid is not None:
        user.setdefault("securityContext", {})["runAsUser"] = uid
    cpu = config.get("cpuModelcar") or "10m"
    memory = config.get("memoryModelcar") or "15Mi"
    resources = {"limits": {"cpu": cpu, "memory": memory}, "requests": {"cpu": cpu, "memory": memory}}
    # "$$$$": Kubernetes turns "$$" into "$" in args, so the shell sees "$$", its own PID.
    sidecar: Obj = {
        "name": "modelcar",
        "image": image,
        "volumeMounts": [{"name": VOLUME, "mountPath": parent, "readOnly": False}],
        "args": ["sh", "-c", f"ln -sf /proc/$$$$/root/models {MOUNT} && sleep infinity"],
        "resources": resources,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if uid is not None:
        sidecar["securityContext"] = {"runAsUser": uid}
    check = (
        f"echo 'Pre-fetching modelcar {image}: ' && [ -d /models ] && [ \"$$(ls -A /models)\" ] && "
        "echo 'OK ... Prefetched and valid (/models exists)' || "
        "(echo 'NOK ... Prefetched but modelcar is invalid (/models does not exist or is empty)' && exit 1)"
    )
    init = {
        "name": "modelcar-init",
        "image": image,
        "args": ["sh", "-c", check],
        "resources": resources,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec["containers"].append(sidecar)
    spec.setdefault("initContainers", []).append(init)
    spec["shareProcessNamespace"] = True
    return pod


def inject_agent(pod: Obj, cluster: Cluster) -> Obj:
    """InjectAgent for the model puller (the logger and batcher annotations are not rendered here)."""
    pod = copy.deepcopy(pod)
    annotations = pod["metadata"]["annotations"]
    spec = pod["spec"]
    if AGENT_ANNOTATION not in annotations or any(c["name"] == AGENT for c in spec["containers"]):
        return pod
    args = ["--enable-puller"]
    if CONFIG_PATH_ANNOTATION in annotations:
        args += ["--config-dir", annotations[CONFIG_PATH_ANNOTATION]]
    if MODEL_DIR_ANNOTATION in annotations:
        args += ["--model-dir", annotations[MODEL_DIR_ANNOTATION]]
    (server,) = [c for c in spec["containers"] if c["name"] == CONTAINER]
    port = str((server.get("ports") or [{"containerPort": 8080}])[0]["containerPort"])
    args += ["--component-port", port]
    env: list[Obj] = []
    probe_path = "/"
    readiness = spec["containers"][0].get("readinessProbe")  # no queue-proxy: RawDeployment
    if readiness is not None and ("httpGet" in readiness or "tcpSocket" in readiness):
        env.append({"name": "SERVING_READINESS_PROBE", "value": json.dumps(readiness, separators=(",", ":"))})
        if readiness.get("httpGet", {}).get("path"):
            probe_path = readiness["httpGet"]["path"]
    config = cluster.config["agent"]
    agent: Obj = {
        "name": AGENT,
        "image": config["image"],
        "args": args,
        "resources": {
            "limits": {"cpu": config["cpuLimit"], "memory": config["memoryLimit"]},
            "requests": {"cpu": config["cpuRequest"], "memory": config["memoryRequest"]},
        },
        "ports": [{"name": "agent-port", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "securityContext": copy.deepcopy(spec["containers"][0].get("securityContext")),
        "env": env,
        "readinessProbe": {
            "httpGet": {
                "httpHeaders": [{"name": "K-Network-Probe", "value": "queue"}],
                "port": AGENT_PORT,
                "path": probe_path,
                "scheme": "HTTP",
            }
        },
    }
    if agent["securityContext"] is None:
        del agent["securityContext"]
    _add_credentials(agent, pod, cluster)
    spec["containers"].append(agent)
    # mountModelDir, then mountModelConfig (KServe fails the pod when either annotation is missing).
    _mount(pod, AGENT, {"name": MODEL_DIR_VOLUME, "emptyDir": {}}, annotations[MODEL_DIR_ANNOTATION])
    _mount(pod, CONTAINER, {"name": MODEL_DIR_VOLUME, "emptyDir": {}}, annotations[MODEL_DIR_ANNOTATION])
    config_map = {"name": MODEL_CONFIG_VOLUME, "configMap": {"name": annotations[CONFIG_VOLUME_ANNOTATION]}}
    _mount(pod, AGENT, config_map, MODEL_CONFIG_DIR)
    return pod


def _mount(pod: Obj, container: str, volume: Obj, path: str) -> None:
    """mountVolumeToContainer: the volume once in the pod, a read-write mount in the container."""
    volumes = pod["spec"].setdefault("volumes", [])
    if all(v["name"] != volume["name"] for v in volumes):
        volumes.append(volume)
    for c in pod["spec"]["containers"]:
        if c["name"] == container:
            c.setdefault("volumeMounts", []).append(
                {"name": volume["name"], "readOnly": False, "mountPath": path}
            )


def render_pod(isvc: Obj, cluster: Cluster) -> Obj:
    """The Pod as the API server would store it: controller first, then the pod webhook
    (storage initializer, then agent: the order of KServe's mutators)."""
    pod = inject_storage(predictor_pod(isvc, cluster), cluster, isvc["metadata"].get("namespace", "default"))
    return inject_agent(pod, cluster)
