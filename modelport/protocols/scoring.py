"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``/health``, ``/version``.

A thin adapter: the core (``DataPlane.score``) answers; this module writes MLflow's wire
format, errors included (MLflow's ``error_code`` names and statuses, its JSON shapes).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec

from modelport.errors import ModelNotReady, ModelportError
from modelport.protocols.messages import JSON, HttpRequest, HttpResponse

if TYPE_CHECKING:
    from modelport.dataplane import DataPlane

# MLflow's error_code names for the statuses modelport answers with. A request over its
# deadline is MLflow's DEADLINE_EXCEEDED, the code MLflow itself answers 504 for.
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# MLflow's own status for each of its error codes (``mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS``);
# any other code is 500, as in MLflow.
MLFLOW_HTTP_STATUS = {
    "INTERNAL_ERROR": 500,
    "INVALID_STATE": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "CANCELLED": 499,
    "RESOURCE_EXHAUSTED": 429,
    "ABORTED": 409,
    "RESOURCE_CONFLICT": 409,
    "ALREADY_EXISTS": 409,
    "NOT_FOUND": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "PERMISSION_DENIED": 403,
    "CUSTOMER_UNAUTHORIZED": 401,
    "UNAUTHENTICATED": 401,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_PARAMETER_VALUE": 400,
}

_encode = msgspec.json.Encoder().encode


async def invocations(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    result = await dp.score(None, req.body, req.headers.get("content-type"))
    content_type = result.content_type
    return HttpResponse(
        200, result.body, JSON if content_type == "application/json" else content_type.encode()
    )


def mlflow_status(exc: ModelportError) -> int | None:
    """The status MLflow answers an error of its own scoring code with; None for modelport's."""
    code = exc.details.get("mlflow_error_code")
    if code is None:
        return None
    return MLFLOW_HTTP_STATUS.get(code, 500)


def error_response(status: int, exc: ModelportError, headers: dict[str, str]) -> HttpResponse:
    """An error in MLflow's shape: MLflow's own answer as it gave it, else one of modelport's."""
    details = exc.details
    mimetype = details.get("mlflow_mimetype")
    if mimetype is not None:
        return HttpResponse(status, exc.message.encode(), mimetype.encode(), headers)
    code = details.get("mlflow_error_code")
    if code is not None:
        # Byte for byte what MLflow's scoring server writes (json.dumps, not a compact encoder).
        body = json.dumps({"error_code": code, "message": exc.message}).encode()
    else:
        body = _encode({"error_code": MLFLOW_CODES.get(status, "INTERNAL_ERROR"), "message": exc.message})
    return HttpResponse(status, body, JSON, headers)


async def ping(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    if not dp.ready():
        raise ModelNotReady("the model is not ready yet")
    return HttpResponse(200, b"\n")


async def version(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    # mlflow models serve answers with its MLflow version: the one the worker runs.
    return HttpResponse(200, str(dp.runtime().get("mlflow") or "unknown").encode())
