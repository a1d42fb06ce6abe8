"""KServe V1 REST: ``GET /v1/models/NAME`` and ``POST /v1/models/NAME:predict``.

A V1 body (``instances`` or ``inputs``) is also a valid MLflow scoring body, and V1's
``{"predictions": ...}`` is MLflow's response, so prediction goes through the model
environment's own MLflow scoring code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from modelport.errors import InvalidInput, ModelNotFound
from modelport.mlmodel.types import ModelSpec
from modelport.protocols.codecs import OFF_LOOP_BYTES, check_json_depth, off_loop
from modelport.protocols.messages import Handler, HttpRequest, HttpResponse, MethodNotAllowed

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
    model = dp.get(params["name"])
    if len(req.body) > OFF_LOOP_BYTES:
        scoring_body = await off_loop(to_scoring_body, req.body, model.spec)
    else:
        scoring_body = to_scoring_body(req.body, model.spec)
    result = await dp.invocations(scoring_body, "application/json", model.name)
    if result.status >= 400:
        message = _mlflow_message(result.body)
        return HttpResponse(result.status, _encode({"error": message}))
    return HttpResponse(200, result.body)


def to_scoring_body(raw: bytes, spec: ModelSpec) -> bytes:
    """Check a V1 predict body; return the MLflow scoring body the worker reads.

    The front decodes the whole body (so its size bounds what that allocates) and builds
    no tensors: MLflow in the worker does. Nesting is checked first so the worker's
    parser never recurses past its limit.
    """
    check_json_depth(raw)
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # check_json_depth ran first; never trust one guard alone
        raise InvalidInput("the request body's JSON is nested too deeply") from exc
    if not isinstance(body, dict) or not ({"instances", "inputs"} & body.keys()):
        raise InvalidInput('a V1 predict body is a JSON object with "instances" or "inputs"')
    return _as_scoring_body(body, spec) or raw


def _as_scoring_body(body: dict[str, Any], spec: ModelSpec) -> bytes | None:
    """Rows as lists for a model with named columns: what KServe V1 clients send."""
    sig = spec.signature
    key = "instances" if "instances" in body else "inputs"
    rows = body[key]
    if sig is None or sig.input_kind != "columns" or not isinstance(rows, list) or not rows:
        return None
    names = [f.name for f in sig.inputs]
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {len(names)} or not all(names):
        return None
    scoring: dict[str, Any] = {"dataframe_split": {"columns": names, "data": rows}}
    if "params" in body:
        scoring["params"] = body["params"]
    return _encode(scoring)


def _mlflow_message(body: bytes) -> str:
    try:
        return str(msgspec.json.decode(body).get("message", body.decode(errors="replace")))
    except (msgspec.DecodeError, AttributeError):
        return body.decode(errors="replace")
