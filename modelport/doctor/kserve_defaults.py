"""The KServe objects doctor knows without being given them: modelport's own runtime and storage
container (deploy/kserve, checked against those files by the tests), KServe's kserve-mlserver and
default storage container, and what MLServer's image ships.
"""

from __future__ import annotations

from typing import Any

MODELPORT_RUNTIME: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "modelport-mlflow", "annotations": {"serving.kserve.io/server-type": "modelport"}},
    "spec": {
        "supportedModelFormats": [
            {"name": "mlflow", "version": v, "autoSelect": True} for v in ("1", "2", "3")
        ],
        "protocolVersions": ["v1", "v2", "grpc-v2"],
        "containers": [
            {
                "name": "kserve-container",
                "resources": {
                    "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi"},
                    "limits": {"cpu": "1", "memory": "2Gi"},
                },
            }
        ],
    },
}

# KServe's config/runtimes/kserve-mlserver.yaml (the mlflow entries and what doctor reads).
MLSERVER_RUNTIME: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {"name": "kserve-mlserver", "annotations": {"serving.kserve.io/server-type": "mlserver"}},
    "spec": {
        "supportedModelFormats": [
            {"name": "sklearn", "version": "0", "autoSelect": True, "priority": 2},
            {"name": "sklearn", "version": "1", "autoSelect": True, "priority": 2},
            {"name": "xgboost", "version": "1", "autoSelect": True, "priority": 2},
            {"name": "xgboost", "version": "2", "autoSelect": True, "priority": 2},
            {"name": "lightgbm", "version": "3", "autoSelect": True, "priority": 2},
            {"name": "lightgbm", "version": "4", "autoSelect": True, "priority": 2},
            {"name": "mlflow", "version": "1", "autoSelect": True, "priority": 1},
            {"name": "mlflow", "version": "2", "autoSelect": True, "priority": 1},
        ],
        "protocolVersions": ["v2"],
        "containers": [
            {
                "name": "kserve-container",
                "image": "mlserver:replace",
                "resources": {
                    "requests": {"cpu": "1", "memory": "2Gi"},
                    "limits": {"cpu": "1", "memory": "2Gi"},
                },
            }
        ],
    },
}

MODELPORT_STORAGE: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterStorageContainer",
    "metadata": {"name": "modelport"},
    "spec": {
        "container": {"name": "storage-initializer", "image": "modelport:0.1.0"},
        "supportedUriFormats": [
            {"prefix": p}
            for p in (
                "s3://",
                "gs://",
                "https://",
                "http://",
                "az://",
                "abfs://",
                "abfss://",
                "models:/",
                "runs:/",
                "mlflow-artifacts:/",
            )
        ],
        "workloadType": "initContainer",
        "supportsMultiModelDownload": True,
    },
}

# KServe's config/storagecontainers/default.yaml.
KSERVE_DEFAULT_STORAGE: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterStorageContainer",
    "metadata": {"name": "default"},
    "spec": {
        "container": {"name": "storage-initializer", "image": "kserve/storage-initializer"},
        "supportedUriFormats": [
            {"prefix": "gs://"},
            {"prefix": "s3://"},
            {"prefix": "hdfs://"},
            {"prefix": "hf://"},
            {"prefix": "modelscope://"},
            {"prefix": "webhdfs://"},
            {"regex": "https://(.+?).blob.core.windows.net/(.+)"},
            {"regex": "https://(.+?).file.core.windows.net/(.+)"},
            {"regex": "https?://(.+)/(.+)"},
        ],
        "workloadType": "initContainer",
        "supportsMultiModelDownload": True,
    },
}

# deploy/kserve/servingruntime-multimodel.yaml: KServe never selects it by itself (multiModel), an
# InferenceService with no storageUri names it, and each TrainedModel brings a model.
MODELPORT_MULTIMODEL_RUNTIME: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ClusterServingRuntime",
    "metadata": {
        "name": "modelport-mlflow-multimodel",
        "annotations": {"serving.kserve.io/server-type": "modelport"},
    },
    "spec": {
        "multiModel": True,
        "supportedModelFormats": [{"name": "mlflow", "version": v} for v in ("1", "2", "3")],
        "protocolVersions": ["v1", "v2", "grpc-v2"],
        "containers": [
            {
                "name": "kserve-container",
                "resources": {
                    "requests": {"cpu": "1", "memory": "4Gi", "ephemeral-storage": "1Gi"},
                    "limits": {"cpu": "2", "memory": "4Gi"},
                },
            }
        ],
    },
}

BUILTIN_RUNTIMES = (MODELPORT_RUNTIME, MODELPORT_MULTIMODEL_RUNTIME, MLSERVER_RUNTIME)
BUILTIN_STORAGE = (KSERVE_DEFAULT_STORAGE, MODELPORT_STORAGE)

# ValidateStorageURI (pkg/controller/v1beta1/inferenceservice/utils): what KServe admits when no
# storage container claims the URI; pvc:// is mounted, oci:// served by a modelcar sidecar.
KSERVE_URI_PREFIXES = (
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "oci+native://",
    "oci+fetch://",
    "hf://",
)
AZURE_BLOB_REGEX = r"https://(.+?).blob.core.windows.net/(.+)"

# Multi-model serving: KServe's agent downloads each TrainedModel itself (pkg/agent/storage), not a
# storage container, and the TrainedModel webhook admits only the URIs it can fetch.
AGENT_URI_PREFIXES = ("s3://", "gs://", "https://", "http://")
TRAINED_MODEL_NAME = r"^[a-zA-Z0-9_-]+$"
# The inferenceservice ConfigMap's default resource.memoryLimit, set on a predictor that names none;
# the TrainedModel controller compares the TrainedModels' memory with this container's limit.
DEFAULT_MEMORY_LIMIT = "2Gi"

# The MLflow in MLServer's image: its Dockerfile installs every runtime under constraints exported
# from the root poetry.lock (`poetry export --with all-runtimes`). MLServer 1.7.1 locks mlflow 2.19.0
# (mlserver-mlflow 1.7.1 asks mlflow>=2.19.0), Python 3.10; KServe 0.15+ ships that image.
MLSERVER_VERSION = "1.7.1"
MLSERVER_MLFLOW = "2.19.0"
