"""The protocol-neutral core that the HTTP (and later gRPC) adapters call."""

from __future__ import annotations

from typing import Any

from modelport import __version__
from modelport.errors import ModelNotFound
from modelport.inference import InferenceRequest, InferenceResponse, RawResponse
from modelport.mlmodel.signature import to_v2_metadata
from modelport.model import ServedModel

EXTENSIONS = ["binary_tensor_data"]


class DataPlane:
    def __init__(self, models: dict[str, ServedModel] | None = None) -> None:
        self.models: dict[str, ServedModel] = dict(models or {})

    def add(self, model: ServedModel) -> None:
        self.models[model.name] = model

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return bool(self.models) and all(m.ready for m in self.models.values())

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelport", "version": __version__, "extensions": EXTENSIONS}

    def get(self, name: str, version: str | None = None) -> ServedModel:
        model = self.models.get(name)
        if model is None or (version is not None and version != model.version):
            known = ", ".join(repr(n) for n in self.models) or "none"
            what = f"model '{name}'" + (f" version '{version}'" if version is not None else "")
            raise ModelNotFound(f"{what} is not served here (models: {known})")
        return model

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.get(name, version).ready

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.get(name, version)
        versions = [model.version] if model.version else []
        return to_v2_metadata(model.spec, model.name, versions)

    async def infer(self, name: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        return await self.get(name, version).infer(request)

    def only_model(self) -> ServedModel:
        """The model /invocations serves: MLflow's scoring server serves exactly one."""
        if len(self.models) != 1:
            raise ModelNotFound("/invocations needs exactly one served model")
        return next(iter(self.models.values()))

    async def invocations(self, body: bytes, content_type: str | None) -> RawResponse:
        return await self.only_model().invocations(body, content_type)
