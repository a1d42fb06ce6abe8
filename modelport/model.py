"""One served model: checks requests against its signature, shapes them for the
workers, and turns what the model returned into protocol-neutral tensors.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from modelport import metrics
from modelport.errors import InvalidInput, UnsupportedMediaType
from modelport.inference import (
    NUMPY_OF,
    Deadline,
    InferenceRequest,
    InferenceResponse,
    ScoreResult,
    Tensor,
    datatype_of,
)
from modelport.mlmodel.signature import OUTPUT_PREFIX, field_names
from modelport.mlmodel.types import FieldSpec, ModelSpec
from modelport.workers.batching import Batcher, PredictCall, PredictResult
from modelport.workers.ipc import decode_score, encode_score
from modelport.workers.pool import WorkerPool

# Flavors whose predict treats each row on its own, so rows of several requests can share a call.
ROW_WISE_FLAVORS = frozenset({"sklearn", "xgboost", "lightgbm", "catboost"})


class ServedModel:
    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        pool: WorkerPool,
        batcher: Batcher,
        version: str | None = None,
        request_timeout: float = 0.0,
    ) -> None:
        self.name = name
        self.spec = spec
        self.pool = pool
        self.batcher = batcher
        self.version = version
        self.request_timeout = request_timeout  # seconds; 0 = none
        # A plain count the gauge reads when scraped: no lock per request.
        self.in_flight = 0
        # Requests the dataplane holds this model for (an unload waits for them), and when it
        # last took one (least recently used unloading).
        self.users = 0
        self.last_used = 0.0
        metrics.IN_FLIGHT.labels(name).set_function(lambda: self.in_flight)
        sig = spec.signature
        self._columns: dict[str, FieldSpec] = (
            {f.name: f for f in sig.inputs if f.name} if sig and sig.input_kind == "columns" else {}
        )
        # Unnamed outputs take the names the metadata endpoint gives them ("output-0", ...).
        self._output_names = field_names(sig.outputs, OUTPUT_PREFIX) if sig else []
        # Column names when every column is a required number: such tables may skip MLflow's parser.
        fields = list(self._columns.values())
        numeric = (
            sig is not None
            and bool(fields)
            and len(fields) == len(sig.inputs)
            and all(f.required and f.datatype in _NUMERIC_DATATYPES for f in fields)
        )
        self.numeric_columns: list[str] | None = [f.name for f in fields if f.name] if numeric else None

    @property
    def mlflow_1(self) -> bool:
        """The workers run MLflow 1.x: other scoring JSON shapes, bare-list answers, no params."""
        return str(self.pool.load_info.get("mlflow") or "").startswith("1.")

    @property
    def ready(self) -> bool:
        """True while a worker can take a request (not all loading, restarting or stuck)."""
        return self.pool.ready

    def deadline(self, client: float | None = None) -> Deadline | None:
        """A request's deadline: the client's (event loop clock) or --request-timeout, the earlier."""
        timeout = self.request_timeout
        if timeout <= 0:
            return None if client is None else Deadline(client, None, None)
        limit = asyncio.get_running_loop().time() + timeout
        return Deadline(limit if client is None or client > limit else client, limit, timeout)

    async def predict(self, call: PredictCall, deadline: float | None = None) -> PredictResult:
        call.deadline = self.deadline(deadline)
        self.in_flight += 1
        try:
            return await self.batcher.submit(call)
        finally:
            self.in_flight -= 1

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        self.in_flight += 1
        try:
            call = self.prepare(request)
            call.deadline = self.deadline(request.deadline)
            result = await self.batcher.submit(call)
        finally:
            self.in_flight -= 1
        outputs = self.to_tensors(result)
        params: dict[str, Any] = {}
        if result.kind == "dataframe":
            params["content_type"] = "pd"
        if request.outputs is not None:
            by_name = {t.name: t for t in outputs}
            unknown = [n for n in request.outputs if n not in by_name]
            if unknown:
                raise InvalidInput(f"unknown output(s) {unknown}; the model returns {list(by_name)}")
            outputs = [by_name[n] for n in request.outputs]
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=request.id,
            outputs=outputs,
            parameters=params,
        )

    async def score_with_mlflow(
        self, body: bytes, content_type: str | None, deadline: float | None = None
    ) -> ScoreResult:
        """MLflow scoring by the worker's own mlflow; its refusals come back as errors that
        carry MLflow's error code (see ``modelport.errors``)."""
        if not content_type:
            raise UnsupportedMediaType(
                "missing Content-Type: send application/json or text/csv (MLflow scoring protocol)"
            )
        header, buffers = encode_score(body, content_type)
        self.in_flight += 1
        try:
            reply, out = await self.pool.request(header, buffers, self.deadline(deadline))
        finally:
            self.in_flight -= 1
        return decode_score(reply, out)

    # --- requests -----------------------------------------------------------------

    def prepare(self, request: InferenceRequest) -> PredictCall:
        content_type = request.parameters.get("content_type")
        inputs = request.inputs
        sig = self.spec.signature
        if content_type == "np" or (sig is not None and sig.input_kind == "tensors"):
            return self._tensor_call(request)
        if content_type == "pd" or self._columns or len(inputs) > 1:
            return self._frame_call(request)
        arr = inputs[0].data
        return PredictCall([(inputs[0].name, arr)], "single", self._params(request), _rows(arr))

    def _frame_call(self, request: InferenceRequest) -> PredictCall:
        inputs = request.inputs
        columns = self._columns
        first = inputs[0]
        if (
            len(inputs) == 1
            and columns
            and first.name not in columns
            and first.data.ndim == 2
            and first.data.shape[1] == len(self.spec.signature.inputs)  # type: ignore[union-attr]
        ):
            # One [N, k] tensor for a k-column signature: columns by position.
            arrays = [(f.name or str(i), first.data[:, i]) for i, f in enumerate(self.spec.signature.inputs)]  # type: ignore[union-attr]
        else:
            arrays = [(t.name, t.data) for t in inputs]
        return self.table_call(arrays, self._params(request))

    def table_call(self, arrays: list[tuple[str, np.ndarray]], params: dict[str, Any] | None) -> PredictCall:
        """Columns of one table, checked against and cast to the signature."""
        columns = self._columns
        arrays = [(n, a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a) for n, a in arrays]
        if columns:
            given = {n for n, _ in arrays}
            missing = [n for n, f in columns.items() if f.required and n not in given]
            if missing:
                raise InvalidInput(
                    f"missing required input column(s) {', '.join(repr(m) for m in missing)}; "
                    f"the model's signature wants {', '.join(repr(c) for c in columns)}"
                )
            arrays = [(n, _cast(n, a, columns[n])) if n in columns else (n, a) for n, a in arrays]
        rows = {len(a) if a.ndim else 1 for _, a in arrays}
        if len(rows) > 1:
            raise InvalidInput(
                f"input columns have different lengths {sorted(rows)}; a table needs one length"
            )
        return PredictCall(arrays, "frame", params, rows.pop())

    def _tensor_call(self, request: InferenceRequest) -> PredictCall:
        sig = self.spec.signature
        specs = {f.name: f for f in sig.inputs} if sig is not None else {}
        inputs = request.inputs
        if len(specs) == 1 and len(inputs) == 1:
            spec = next(iter(specs.values()))
            arr = _check_tensor(inputs[0].name, inputs[0].data, spec)
            return PredictCall([(inputs[0].name, arr)], "single", self._params(request), _rows(arr))
        if not specs and len(inputs) == 1:
            arr = inputs[0].data
            return PredictCall([(inputs[0].name, arr)], "single", self._params(request), _rows(arr))
        arrays = []
        for t in inputs:
            named = specs.get(t.name)
            arrays.append((t.name, _check_tensor(t.name, t.data, named) if named else t.data))
        missing = [n for n, f in specs.items() if n and f.required and n not in {t.name for t in inputs}]
        if missing:
            raise InvalidInput(f"missing required input tensor(s) {missing}")
        rows = {_rows(a) for _, a in arrays}
        return PredictCall(arrays, "dict", self._params(request), rows.pop() if len(rows) == 1 else 0)

    def _params(self, request: InferenceRequest) -> dict[str, Any] | None:
        # V2 request parameters other than the protocol's own are the model's params (MLflow >= 2.6).
        params = {k: v for k, v in request.parameters.items() if k not in _PROTOCOL_PARAMS}
        sig = self.spec.signature
        if params and sig is not None and sig.params:
            known = {p.name for p in sig.params}
            unknown = sorted(set(params) - known)
            if unknown:
                raise InvalidInput(f"unknown parameter(s) {unknown}; the model accepts {sorted(known)}")
        return params or None

    # --- results ------------------------------------------------------------------

    def to_tensors(self, result: PredictResult) -> list[Tensor]:
        if result.kind == "json":
            import json

            arr = np.array([json.dumps(result.json)], dtype=object)
            return [Tensor(self._output_name(0), "BYTES", [1], arr, {"content_type": "str"})]
        tensors = []
        for i, (name, arr) in enumerate(result.outputs):
            name = name or self._output_name(i)
            datatype = datatype_of(arr)
            params = {"content_type": "np"} if datatype != "BYTES" else {"content_type": "str"}
            tensors.append(Tensor(name, datatype, list(arr.shape), arr, params))
        return tensors

    def _output_name(self, index: int) -> str:
        return self._output_names[index] if index < len(self._output_names) else f"{OUTPUT_PREFIX}{index}"


_NUMERIC_DATATYPES = frozenset({"FP64", "FP32", "INT64", "INT32"})
_PROTOCOL_PARAMS = frozenset({"content_type", "headers", "binary_data_output"})


def _rows(arr: np.ndarray) -> int:
    return int(arr.shape[0]) if arr.ndim else 1


def _cast(name: str, arr: np.ndarray, field: FieldSpec) -> np.ndarray:
    """Cast a column to its signature type where that loses nothing, else refuse it."""
    want = field.numpy_dtype
    if not want:
        return arr
    if want == "object" or field.datatype == "BYTES":
        if arr.dtype.kind != "O":
            raise InvalidInput(
                f"input column '{name}' has datatype {datatype_of(arr)} but the signature wants {field.mlflow_type} (BYTES)"
            )
        return _as_text(name, arr) if field.mlflow_type == "string" else arr
    return _safe_cast(
        f"input column '{name}'", arr, np.dtype(want), f"{field.mlflow_type} ({field.datatype})"
    )


def _safe_cast(what: str, arr: np.ndarray, target: np.dtype[Any], wanted: str) -> np.ndarray:
    """Widen ``arr`` to ``target`` where no value can change, as MLflow's schema enforcement does."""
    if arr.dtype == target:
        return arr
    if arr.dtype.kind == "O" or not np.can_cast(arr.dtype, target, "safe"):
        raise InvalidInput(
            f"{what} has datatype {datatype_of(arr)} but the signature wants {wanted}; "
            "it cannot be converted without loss"
        )
    return arr.astype(target)


def _as_text(name: str, arr: np.ndarray) -> np.ndarray:
    """Binary BYTES sent for a string column: the model wants str, as from JSON."""
    if not any(isinstance(v, bytes) for v in arr):
        return arr
    out = np.empty(arr.shape, dtype=object)
    try:
        out[:] = [v.decode() if isinstance(v, bytes) else v for v in arr]
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"input column '{name}' is a string column but holds bytes that are not UTF-8"
        ) from exc
    return out


def _check_tensor(name: str, arr: np.ndarray, spec: FieldSpec) -> np.ndarray:
    want = tuple(spec.shape)
    if want and (len(want) != arr.ndim or any(w != -1 and w != g for w, g in zip(want, arr.shape))):
        raise InvalidInput(f"input '{name}' has shape {list(arr.shape)} but the signature wants {list(want)}")
    target = NUMPY_OF.get(spec.datatype)
    return arr if target is None else _safe_cast(f"input '{name}'", arr, target, spec.datatype)
