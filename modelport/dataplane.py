"""The protocol-neutral core that the HTTP and gRPC adapters call: neutral requests in,
neutral responses out, errors of ``modelport.errors``; no status codes of any protocol.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modelport import __version__
from modelport.errors import InvalidInput, ModelNotFound, ModelNotReady
from modelport.inference import InferenceRequest, InferenceResponse, ScoreResult
from modelport.limits import OFF_LOOP_BYTES, off_loop
from modelport.mlmodel.signature import to_v2_metadata
from modelport.model import ServedModel
from modelport.scoring import (
    JSON,
    PLAIN_JSON,
    predictions_json,
    read_table,
    v1_predictions,
    v1_scoring_body,
)

if TYPE_CHECKING:
    from modelport.repository import ModelRepository

EXTENSIONS = ["binary_tensor_data"]


class DataPlane:
    def __init__(self, models: dict[str, ServedModel] | None = None) -> None:
        # The loaded models, what requests go to; with a repository, it adds and removes them.
        self.models: dict[str, ServedModel] = dict(models or {})
        self.repository: ModelRepository | None = None
        # Readiness waits for the models asked for at start-up (see ``ready``).
        self.starting = False
        # Started with --model-repository: ready with no model loaded (KServe's agent loads them).
        self.ready_when_empty = False

    def ready(self) -> bool:
        """The server's readiness: the start-up loads are over, and every loaded model has a
        worker that can take a request (a model that failed or was unloaded does not count)."""
        if self.starting:
            return False
        if not self.models:
            return self.ready_when_empty
        return all(m.ready for m in self.models.values())

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "modelport", "version": __version__, "extensions": EXTENSIONS}

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """A loaded model; ModelNotFound for a name not known, ModelNotReady for one not loaded."""
        model = self.models.get(name)
        if model is not None and (version is None or version == model.version):
            return model
        self.check(name, version)
        raise ModelNotReady(f"model '{name}' is not loaded ({self.state(name)[1]})")

    def check(self, name: str, version: str | None = None) -> None:
        """ModelNotFound unless a model of that name (and version) is loaded or known."""
        model = self.models.get(name)
        if model is not None and (version is None or version == model.version):
            return
        if model is None and version is None and self.repository is not None:
            self.repository.entry(name)
            return
        known = ", ".join(repr(n) for n in self.models) or "none"
        what = f"model '{name}'" + (f" version '{version}'" if version is not None else "")
        raise ModelNotFound(f"{what} is not served here (models: {known})")

    def state(self, name: str) -> tuple[str, str]:
        """(state, reason) as the repository index reports them."""
        model = self.models.get(name)
        if self.repository is None or name not in self.repository.entries:
            if model is None:
                self.check(name)
            return (
                ("READY", "") if model is not None and model.ready else ("UNAVAILABLE", "workers not ready")
            )
        found = self.repository.entries[name].index()
        return found["state"], found["reason"]

    async def acquire(self, name: str, version: str | None, deadline: float | None) -> ServedModel:
        """The model a request goes to; one unloaded under --max-loaded-models is loaded first,
        the wait bounded by the client's deadline and --request-timeout."""
        model = self.models.get(name)
        if model is not None and (version is None or version == model.version):
            return model
        self.check(name, version)
        if self.repository is None:
            raise ModelNotReady(f"model '{name}' is not loaded")
        return await self.repository.acquire(name, deadline)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        model = self.models.get(name)
        if model is None:
            self.check(name, version)
            return False
        return self.get(name, version).ready

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = self.get(name, version)
        versions = [model.version] if model.version else []
        return to_v2_metadata(model.spec, model.name, versions)

    async def infer(self, name: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        model = self.models.get(name)
        if model is None or (version is not None and version != model.version):
            model = await self.acquire(name, version, request.deadline)
        model.users += 1
        model.last_used = time.monotonic()
        try:
            return await model.infer(request)
        finally:
            model.users -= 1

    def only_name(self) -> str:
        """The model /invocations serves: MLflow's scoring server serves exactly one."""
        names = list(self.repository.entries) if self.repository is not None else list(self.models)
        if len(names) != 1:
            listed = ", ".join(repr(n) for n in names) or "none"
            raise ModelNotFound(
                f"/invocations serves a server's only model (MLflow's scoring protocol) and this server "
                f"has {len(names)} ({listed}): use POST /v2/models/NAME/infer or /v1/models/NAME:predict"
            )
        return names[0]

    def only_model(self) -> ServedModel:
        return self.get(self.only_name())

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
        model = await self.acquire(name if name is not None else self.only_name(), None, deadline)
        model.users += 1
        model.last_used = time.monotonic()
        try:
            return await self._score(model, body, content_type, deadline)
        finally:
            model.users -= 1

    async def _score(
        self, model: ServedModel, body: bytes, content_type: str | None, deadline: float | None
    ) -> ScoreResult:
        # MLflow 1.x reads other JSON shapes and answers a bare list: its own scoring code answers.
        names = model.numeric_columns if content_type in PLAIN_JSON and not model.mlflow_1 else None
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
        model = await self.acquire(name, None, deadline)
        model.users += 1
        model.last_used = time.monotonic()
        try:
            mlflow_1 = model.mlflow_1
            if len(body) > OFF_LOOP_BYTES:
                scoring_body = await off_loop(v1_scoring_body, body, model.spec, mlflow_1)
            else:
                scoring_body = v1_scoring_body(body, model.spec, mlflow_1)
            answer = (await model.score_with_mlflow(scoring_body, JSON, deadline)).body
            return v1_predictions(answer) if mlflow_1 else answer
        finally:
            model.users -= 1
