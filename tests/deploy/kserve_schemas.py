"""JSON schemas for the KServe resources in deploy/kserve, cut down from KServe's CRDs.

Cut by hand from kserve/kserve v0.20.0 config/crd/full: same property names, types and
required lists, for the parts these manifests use. Objects are closed (``additionalProperties:
false``) because kubectl's default strict field validation rejects unknown fields. The tests also
re-check these schemas and the manifests against the real CRDs (``crd_json_schema``), read from
``../shared/specs/kserve/crds`` beside the repository (``KSERVE_CRD_DIR`` points elsewhere, e.g. at
another KServe release's config/crd/full).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Third-party specifications kept beside the repository (on every developer machine and in CI).
KSERVE_SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs" / "kserve"


def crd_dir() -> Path:
    """Where KServe's CRDs are; a missing folder is an error, not a skip."""
    path = Path(os.environ.get("KSERVE_CRD_DIR") or KSERVE_SPECS / "crds")
    if not path.is_dir():
        raise FileNotFoundError(f"KServe CRDs not found at {path}: expected ../shared/specs/kserve/crds")
    return path


Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INTEGER: Schema = {"type": "integer"}
STRINGS: Schema = {"type": "array", "items": STRING}
# x-kubernetes-int-or-string: ports and resource quantities.
INT_OR_STRING: Schema = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
STRING_MAP: Schema = {"type": "object", "additionalProperties": STRING}
ANY: Schema = {}


def closed(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _probe() -> Schema:
    return closed(
        {
            "exec": ANY,
            "failureThreshold": INTEGER,
            "grpc": ANY,
            "httpGet": closed(
                {
                    "host": STRING,
                    "httpHeaders": ANY,
                    "path": STRING,
                    "port": INT_OR_STRING,
                    "scheme": {"type": "string", "enum": ["HTTP", "HTTPS"]},
                },
                required=("port",),
            ),
            "initialDelaySeconds": INTEGER,
            "periodSeconds": INTEGER,
            "successThreshold": INTEGER,
            "tcpSocket": ANY,
            "terminationGracePeriodSeconds": INTEGER,
            "timeoutSeconds": INTEGER,
        }
    )


def _env_source() -> Schema:
    ref = closed({"name": STRING, "optional": BOOLEAN})
    return closed({"configMapRef": ref, "prefix": STRING, "secretRef": ref})


def container() -> Schema:
    """core/v1 Container, as embedded in KServe's CRDs (all 25 field names, the used ones typed)."""
    return closed(
        {
            "args": STRINGS,
            "command": STRINGS,
            "env": {
                "type": "array",
                "items": closed({"name": STRING, "value": STRING, "valueFrom": ANY}, required=("name",)),
            },
            "envFrom": {"type": "array", "items": _env_source()},
            "image": STRING,
            "imagePullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]},
            "lifecycle": ANY,
            "livenessProbe": _probe(),
            "name": STRING,
            "ports": {
                "type": "array",
                "items": closed(
                    {
                        "containerPort": INTEGER,
                        "hostIP": STRING,
                        "hostPort": INTEGER,
                        "name": STRING,
                        "protocol": STRING,
                    },
                    required=("containerPort",),
                ),
            },
            "readinessProbe": _probe(),
            "resizePolicy": ANY,
            "resources": closed(
                {
                    "claims": ANY,
                    "limits": {"type": "object", "additionalProperties": INT_OR_STRING},
                    "requests": {"type": "object", "additionalProperties": INT_OR_STRING},
                }
            ),
            "restartPolicy": STRING,
            "restartPolicyRules": ANY,
            "securityContext": closed(
                {
                    "allowPrivilegeEscalation": BOOLEAN,
                    "appArmorProfile": ANY,
                    "capabilities": closed({"add": STRINGS, "drop": STRINGS}),
                    "privileged": BOOLEAN,
                    "procMount": STRING,
                    "readOnlyRootFilesystem": BOOLEAN,
                    "runAsGroup": INTEGER,
                    "runAsNonRoot": BOOLEAN,
                    "runAsUser": INTEGER,
                    "seLinuxOptions": ANY,
                    "seccompProfile": closed(
                        {"localhostProfile": STRING, "type": STRING}, required=("type",)
                    ),
                    "windowsOptions": ANY,
                }
            ),
            "startupProbe": _probe(),
            "stdin": BOOLEAN,
            "stdinOnce": BOOLEAN,
            "terminationMessagePath": STRING,
            "terminationMessagePolicy": STRING,
            "tty": BOOLEAN,
            "volumeDevices": ANY,
            "volumeMounts": {
                "type": "array",
                "items": closed(
                    {
                        "mountPath": STRING,
                        "mountPropagation": STRING,
                        "name": STRING,
                        "readOnly": BOOLEAN,
                        "recursiveReadOnly": STRING,
                        "subPath": STRING,
                        "subPathExpr": STRING,
                    },
                    required=("mountPath", "name"),
                ),
            },
            "workingDir": STRING,
        },
        required=("name",),
    )


def metadata(namespaced: bool) -> Schema:
    props = {"name": STRING, "labels": STRING_MAP, "annotations": STRING_MAP}
    if namespaced:
        props["namespace"] = STRING
    return closed(props, required=("name",))


def resource(api_version: str, kind: str, spec: Schema, namespaced: bool, **extra: Schema) -> Schema:
    return closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata(namespaced),
            "spec": spec,
            **extra,
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    )


# ServingRuntimeSpec: all 21 field names of v0.20.0; the used ones typed.
SERVING_RUNTIME_SPEC = closed(
    {
        "affinity": ANY,
        "annotations": STRING_MAP,
        "builtInAdapter": ANY,
        "containers": {"type": "array", "minItems": 1, "items": container()},
        "disabled": BOOLEAN,
        "grpcDataEndpoint": STRING,
        "grpcEndpoint": STRING,
        "hostIPC": BOOLEAN,
        "httpDataEndpoint": STRING,
        "imagePullSecrets": ANY,
        "labels": STRING_MAP,
        "multiModel": BOOLEAN,
        "nodeSelector": STRING_MAP,
        # KServe's protocol constants (pkg/constants: ProtocolV1, ProtocolV2, ProtocolGRPCV1/V2).
        "protocolVersions": {
            "type": "array",
            "items": {"type": "string", "enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
        },
        "replicas": INTEGER,
        "schedulerName": STRING,
        "storageHelper": closed({"disabled": BOOLEAN}),
        "supportedModelFormats": {
            "type": "array",
            "items": closed(
                {"autoSelect": BOOLEAN, "name": STRING, "priority": INTEGER, "version": STRING},
                required=("name",),
            ),
        },
        "tolerations": ANY,
        "volumes": ANY,
        "workerSpec": ANY,
    },
    required=("containers",),
)

CLUSTER_SERVING_RUNTIME = resource(
    "serving.kserve.io/v1alpha1", "ClusterServingRuntime", SERVING_RUNTIME_SPEC, namespaced=False
)

STORAGE_CONTAINER_SPEC = closed(
    {
        "container": container(),
        "supportedUriFormats": {
            "type": "array",
            "minItems": 1,
            # One of the two (KServe's own TODO says so; its matcher reads prefix first).
            "items": {
                "oneOf": [
                    closed({"prefix": {"type": "string", "minLength": 1}}, required=("prefix",)),
                    closed({"regex": {"type": "string", "minLength": 1}}, required=("regex",)),
                ]
            },
        },
        # pkg/apis/serving/v1alpha1/storage_container_types.go: InitContainer, LocalModelDownloadJob.
        "workloadType": {"type": "string", "enum": ["initContainer", "localModelDownloadJob"]},
        "supportsMultiModelDownload": BOOLEAN,
    },
    required=("container", "supportedUriFormats"),
)

CLUSTER_STORAGE_CONTAINER = resource(
    "serving.kserve.io/v1alpha1",
    "ClusterStorageContainer",
    STORAGE_CONTAINER_SPEC,
    namespaced=False,
    disabled=BOOLEAN,
)

# PredictorSpec has 69 fields; only the ones an example needs are listed, so a typo fails.
MODEL_SPEC = closed(
    {
        "modelFormat": closed({"name": STRING, "version": STRING}, required=("name",)),
        "runtime": STRING,
        "runtimeVersion": STRING,
        "protocolVersion": {"type": "string", "enum": ["v1", "v2", "grpc-v1", "grpc-v2"]},
        "storageUri": STRING,
        "args": STRINGS,
        "env": container()["properties"]["env"],
        "resources": container()["properties"]["resources"],
    }
)

INFERENCE_SERVICE = resource(
    "serving.kserve.io/v1beta1",
    "InferenceService",
    closed(
        {
            "predictor": closed(
                {
                    "model": MODEL_SPEC,
                    "minReplicas": INTEGER,
                    "maxReplicas": INTEGER,
                    "serviceAccountName": STRING,
                    # KServe >= 0.20.
                    "storageContainerName": STRING,
                }
            )
        },
        required=("predictor",),
    ),
    namespaced=True,
)

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): CLUSTER_SERVING_RUNTIME,
    ("serving.kserve.io/v1alpha1", "ClusterStorageContainer"): CLUSTER_STORAGE_CONTAINER,
    ("serving.kserve.io/v1beta1", "InferenceService"): INFERENCE_SERVICE,
}

# Which CRD file (under config/crd/full, searched recursively) holds each kind.
CRD_FILES: dict[str, str] = {
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
    "ClusterStorageContainer": "serving.kserve.io_clusterstoragecontainers.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
}


def crd_json_schema(node: Schema) -> Schema:
    """A CRD's openAPIV3Schema as JSON Schema, closed the way the API server's strict validation is."""
    out: Schema = {}
    if node.get("x-kubernetes-int-or-string"):
        return dict(INT_OR_STRING)
    for key in ("type", "enum", "required", "minItems", "maxItems", "minimum", "maximum"):
        if key in node:
            out[key] = node[key]
    if "properties" in node:
        out["properties"] = {k: crd_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    elif isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = crd_json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = crd_json_schema(node["items"])
    return out
