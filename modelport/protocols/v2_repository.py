"""The Open Inference Protocol's model repository extension over REST, as Triton and MLServer
serve it and KServe's model agent calls it:

- ``POST /v2/repository/index`` (body optional: ``{"ready": true}`` lists the ready ones only):
  ``[{"name", "version", "state", "reason"}]``;
- ``POST /v2/repository/models/NAME/load`` (body optional: ``{"parameters": {"uri": URI}}``, any
  URI ``serve`` reads; without it, the model's own URI or ``--model-repository``/NAME), also a reload;
- ``POST /v2/repository/models/NAME/unload``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from modelport.errors import InvalidInput, MethodNotAllowed, ModelLoadError, ModelNotFound
from modelport.protocols.messages import Handler, HttpRequest, HttpResponse
from modelport.repository import ModelRepository

if TYPE_CHECKING:
    from modelport.dataplane import DataPlane

PREFIX = "/v2/repository/models/"
_encode = msgspec.json.encode


class _IndexBody(msgspec.Struct):
    ready: bool = False
    repository_name: str = ""


class _LoadBody(msgspec.Struct):
    parameters: dict[str, Any] | None = None


def route(method: str, rest: str) -> tuple[Handler, dict[str, Any]]:
    """Route ``/v2/repository/models/<rest>``: NAME/load or NAME/unload."""
    name, _, action = rest.partition("/")
    handler = {"load": load, "unload": unload}.get(action)
    if not name or handler is None:
        raise ModelNotFound(f"no endpoint at {PREFIX}{rest}")
    if method != "POST":
        raise MethodNotAllowed(f"{method} is not allowed on {PREFIX}{rest}")
    return handler, {"name": name}


def repository_of(dp: DataPlane) -> ModelRepository:
    if dp.repository is None:
        raise ModelNotFound("this server has no model repository")
    return dp.repository


def decode(body: bytes, kind: type[Any]) -> Any:
    if not body.strip():
        return kind()
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid repository request: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc


def load_uri(parameters: dict[str, Any] | None) -> str | None:
    """The ``uri`` load parameter; any other is refused by name (Triton's ``config`` and
    ``file:`` parameters describe Triton's own model configuration)."""
    parameters = parameters or {}
    unknown = sorted(k for k in parameters if k != "uri")
    if unknown:
        raise InvalidInput(f"unknown load parameter(s) {unknown}; modelport reads 'uri' (a model URI)")
    uri = parameters.get("uri")
    if uri is not None and (not isinstance(uri, str) or not uri):
        raise InvalidInput("the load parameter 'uri' must be a non-empty string (a model URI)")
    return uri


async def load_model(repository: ModelRepository, name: str, uri: str | None) -> None:
    """Load or reload; a model whose files cannot be loaded is the request's fault (400, as
    Triton answers), the message naming why."""
    try:
        await repository.load(name, uri)
    except ModelLoadError as exc:
        raise InvalidInput(f"failed to load model '{name}': {exc.message}") from exc


async def index(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    body = decode(req.body, _IndexBody)
    return HttpResponse(200, _encode(repository_of(dp).index(ready_only=body.ready)))


async def load(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    uri = load_uri(decode(req.body, _LoadBody).parameters)
    name = params["name"]
    await load_model(repository_of(dp), name, uri)
    return HttpResponse(200, _encode({"name": name, "load": True}))


async def unload(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    decode(req.body, _LoadBody)  # parameters (Triton's unload_dependents) change nothing here
    name = params["name"]
    await repository_of(dp).unload(name)
    return HttpResponse(200, _encode({"name": name, "unload": True}))
