"""KServe V1 REST: ``GET /v1/models/NAME`` and ``POST /v1/models/NAME:predict``.

A thin adapter: the core answers V1 prediction (``DataPlane.predict_v1``, MLflow scoring
in the model's environment); errors are rendered by the HTTP edge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from modelport.errors import MethodNotAllowed, ModelNotFound
from modelport.protocols.messages import Handler, HttpRequest, HttpResponse

if TYPE_CHECKING:
    from modelport.dataplane import DataPlane

_encode = msgspec.json.encode


def route(method: str, rest: str) -> tuple[Handler, dict[str, Any]]:
    name, sep, verb = rest.partition(":")
    if not name or "/" in name or (sep and verb != "predict"):
        raise ModelNotFound(f"no endpoint at /v1/models/{rest}")
    handler, allowed = (predict, "POST") if sep else (model_status, "GET")
    if method != allowed:
        raise MethodNotAllowed(f"{method} is not allowed on /v1/models/{rest}")
    return handler, {"name": name}


async def root(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, b'{"status":"alive"}')


async def list_models(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, _encode({"models": list(dp.models)}))


async def model_status(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    model = dp.get(params["name"])
    return HttpResponse(200 if model.ready else 503, _encode({"name": model.name, "ready": model.ready}))


async def predict(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    return HttpResponse(200, await dp.predict_v1(params["name"], req.body))
