"""The protocol-neutral core that the HTTP and gRPC adapters call: neutral requests in,
neutral responses out, errors of ``modelport.errors``; no status codes of any protocol.
"""

from __future__ import annotations

from typing import Any

from modelport import __version__
from modelport.errors import InvalidInput, ModelNotFound
from modelport.inference import InferenceRequest, InferenceResponse, ScoreResult
from modelport.limits import OFF_LOOP_BYTES, off_loop
from modelport.mlmodel.signature import to_v2_metadata
from modelport.model import ServedModel
from modelport.scoring import JSON, PLAIN_JSON, predictions_json, read_table, v1_scoring_body

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

    def runtime(self, name: str | None = None) -> dict[str, Any]:
        """What the model's workers run on: "python", "mlflow", "numpy" versions and load times.

        ``name`` None: the only model (MLflow scoring serves exactly one).
        """
        model = self.get(name) if name is not None else self.only_model()
        return model.pool.load_info

    async def score(
        self, name: str | None, body: bytes, content_type: str | None, deadline: float | None = None
    ) -> ScoreResult:
        """MLflow scoring (``POST /invocations``) of ``body``, as the model's own MLflow answers it.

        ``name`` None: the only model. A numeric table for an all-numeric signature is predicted
        here (batched, as V2 is); any other body, or any doubt, is MLflow's in the worker, whose
        refusals are raised as errors carrying MLflow's error code. ``deadline``: the client's,
        on the event loop's clock; --request-timeout applies anyway.
        """
        model = self.get(name) if name is not None else self.only_model()
        names = model.numeric_columns if content_type in PLAIN_JSON else None
        big = len(body) > OFF_LOOP_BYTES
        if big:
            arrays = await off_loop(read_table, body, content_type, names)
        else:
            arrays = read_table(body, content_type, names)
        if arrays is not None:
            try:
                call = model.table_call(arrays, None)
            except InvalidInput:
                call = None  # it does not fit the signature: MLflow should say why
            if call is not None:
                result = await model.predict(call, deadline)
                out = await off_loop(predictions_json, result) if big else predictions_json(result)
                return ScoreResult(JSON, out)
        return await model.score_with_mlflow(body, content_type, deadline)

    async def predict_v1(self, name: str, body: bytes, deadline: float | None = None) -> bytes:
        """KServe V1 predict: the ``{"predictions": ...}`` body for a V1 request body."""
        model = self.get(name)
        if len(body) > OFF_LOOP_BYTES:
            scoring_body = await off_loop(v1_scoring_body, body, model.spec)
        else:
            scoring_body = v1_scoring_body(body, model.spec)
        return (await model.score_with_mlflow(scoring_body, JSON, deadline)).body
