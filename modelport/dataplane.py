"""The protocol-neutral core that the HTTP (and later gRPC) adapters call."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport import __version__
from modelport.errors import InvalidInput, ModelNotFound
from modelport.inference import InferenceRequest, InferenceResponse, RawResponse
from modelport.mlmodel.signature import to_v2_metadata
from modelport.model import ServedModel
from modelport.workers.batching import PredictResult

EXTENSIONS = ["binary_tensor_data"]


class DataPlane:
    def __init__(self, models: dict[str, ServedModel] | None = None) -> None:
        self.models: dict[str, ServedModel] = dict(models or {})

    def ready(self) -> bool:
        """True while every model has a worker that can take a request."""
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

    async def invocations(
        self,
        body: bytes,
        content_type: str | None,
        name: str | None = None,
        deadline: float | None = None,
    ) -> RawResponse:
        """MLflow scoring, answered by the model environment's own mlflow.

        ``deadline`` is the client's, on the event loop's clock; --request-timeout applies anyway.
        """
        model = self.get(name) if name is not None else self.only_model()
        return await model.invocations(body, content_type, deadline)

    def table_columns(self) -> list[str] | None:
        """Column names when /invocations tables can take the fast path (all-numeric signature)."""
        return self.only_model().numeric_columns

    async def predict_table(
        self, arrays: list[tuple[str, np.ndarray]], deadline: float | None = None
    ) -> PredictResult | None:
        """Predict a table of columns; None when it does not fit the signature (MLflow should say why)."""
        model = self.only_model()
        try:
            call = model.table_call(arrays, None)
        except InvalidInput:
            return None
        return await model.predict(call, deadline)

    def mlflow_version(self) -> str | None:
        return self.only_model().pool.load_info.get("mlflow")
