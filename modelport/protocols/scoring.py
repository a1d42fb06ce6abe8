"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``/health``, ``/version``.

Parsing and response shaping run in the worker with the model environment's own
MLflow, so answers equal what ``mlflow models serve`` of that version gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.errors import ModelNotReady
from modelport.protocols.messages import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from modelport.dataplane import DataPlane

# MLflow's error_code names for the statuses modelport answers with.
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    503: "TEMPORARILY_UNAVAILABLE",
}


async def invocations(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    result = await dp.invocations(req.body, req.headers.get("content-type"))
    return HttpResponse(result.status, result.body, result.content_type.encode())


async def ping(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    if not dp.ready():
        raise ModelNotReady("the model is not ready yet")
    return HttpResponse(200, b"\n")


async def version(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    # mlflow models serve answers with its MLflow version: the one the worker runs.
    model = dp.only_model()
    return HttpResponse(200, str(model.pool.load_info.get("mlflow") or "unknown").encode())
