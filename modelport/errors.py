"""One error hierarchy for modelport, each error carrying a protocol-neutral code.

The edge (HTTP, gRPC, CLI) maps codes to statuses with the tables below; nothing
below the edge knows about status codes.

    ModelportError
    ├── InvalidInput            bad request body, wrong datatype/shape, missing column
    │   ├── PayloadTooLarge     body over the configured limit
    │   └── UnsupportedMediaType  a Content-Type the endpoint does not read
    ├── ModelNotFound           no model of that name/version, no endpoint at that path
    ├── MethodNotAllowed        an endpoint that exists, called with the wrong method
    ├── ModelNotReady           model loading, worker restarting
    ├── WorkerCrashed           the worker died with the request in flight
    ├── RequestTimeout          the request overran its deadline
    ├── ModelLoadError          the model could not be read or loaded
    │   └── LayoutError         files the flavor needs are missing
    ├── PredictionError         the model raised while predicting
    ├── StorageError            a model URI could not be fetched
    │   └── UnsafePath          a key or archive member would land outside DEST
    └── EnvironmentError_       an environment could not be built or used

``details`` carry what an edge may need beyond code and message; errors of MLflow's own
scoring code (from the worker) carry ``mlflow_error_code`` (MLflow's ``error_code`` name),
or ``mlflow_mimetype`` when MLflow answered with a plain body (the message) of that type.
"""

from __future__ import annotations

from typing import Any


class ModelportError(Exception):
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code}


class InvalidInput(ModelportError):
    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"


class ModelNotFound(ModelportError):
    code = "model_not_found"


class MethodNotAllowed(ModelportError):
    code = "method_not_allowed"


class ModelNotReady(ModelportError):
    code = "model_not_ready"


class WorkerCrashed(ModelNotReady):
    code = "worker_crashed"


class RequestTimeout(ModelportError):
    code = "timeout"


class ModelLoadError(ModelportError):
    code = "model_load_error"


class LayoutError(ModelLoadError):
    code = "layout_error"


class PredictionError(ModelportError):
    code = "prediction_error"


class StorageError(ModelportError):
    code = "storage_error"


class UnsafePath(StorageError):
    code = "unsafe_path"


class EnvironmentError_(ModelportError):  # noqa: N801 - avoid shadowing the builtin
    code = "environment_error"


HTTP_STATUS: dict[str, int] = {
    "invalid_input": 400,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "model_not_found": 404,
    "method_not_allowed": 405,
    "model_not_ready": 503,
    "worker_crashed": 503,
    "timeout": 504,
    "model_load_error": 500,
    "layout_error": 500,
    "prediction_error": 500,
    "storage_error": 502,
    "unsafe_path": 400,
    "environment_error": 500,
    "internal": 500,
}

# grpc.StatusCode names; looked up by name so this module needs no grpc import. Only the codes
# the Open Inference Protocol's servers answer with: a broken model folder or environment is
# the server's fault (INTERNAL), not a precondition the client could fix.
GRPC_STATUS: dict[str, str] = {
    "invalid_input": "INVALID_ARGUMENT",
    "payload_too_large": "RESOURCE_EXHAUSTED",
    "unsupported_media_type": "INVALID_ARGUMENT",
    "model_not_found": "NOT_FOUND",
    "method_not_allowed": "UNIMPLEMENTED",
    "model_not_ready": "UNAVAILABLE",
    "worker_crashed": "UNAVAILABLE",
    "timeout": "DEADLINE_EXCEEDED",
    "model_load_error": "INTERNAL",
    "layout_error": "INTERNAL",
    "prediction_error": "INTERNAL",
    "storage_error": "UNAVAILABLE",
    "unsafe_path": "INVALID_ARGUMENT",
    "environment_error": "INTERNAL",
    "internal": "INTERNAL",
}


def from_code(code: str, message: str, **details: Any) -> ModelportError:
    """Rebuild an error sent as plain data (e.g. by a worker process)."""
    return _BY_CODE.get(code, ModelportError)(message, **details)


def _all_subclasses(cls: type[ModelportError]) -> list[type[ModelportError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE: dict[str, type[ModelportError]] = {cls.code: cls for cls in _all_subclasses(ModelportError)}
