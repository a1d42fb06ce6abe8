"""MLflow's scoring protocol: ``POST /invocations``, ``GET /ping``, ``/health``, ``/version``.

Parsing and response shaping run in the worker with the model environment's own
MLflow, so answers equal what ``mlflow models serve`` of that version gives. One
exception, for speed: a plain numeric ``dataframe_split`` or ``dataframe_records``
body for a model whose signature is all numeric columns is read here into columns
and takes the same path as V2 (batching included); anything unusual, or any doubt,
goes to the worker's MLflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from modelport.errors import InvalidInput, ModelNotReady
from modelport.protocols.messages import HttpRequest, HttpResponse
from modelport.workers.batching import PredictResult

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
    content_type = req.headers.get("content-type")
    model = dp.only_model()
    names = model.numeric_columns
    if names and content_type in _PLAIN_JSON:
        arrays = numeric_table(req.body, names)
        if arrays is not None:
            try:
                call = model.table_call(arrays, None)
            except InvalidInput:
                call = None  # let MLflow say what is wrong, in its own words
            if call is not None:
                return HttpResponse(200, predictions_json(await model.predict(call)))
    result = await dp.invocations(req.body, content_type)
    return HttpResponse(result.status, result.body, result.content_type.encode())


_PLAIN_JSON = frozenset(
    {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
)
_decode = msgspec.json.decode
_encode = msgspec.json.encode


def numeric_table(body: bytes, names: list[str]) -> list[tuple[str, np.ndarray]] | None:
    """Columns of a numbers-only ``dataframe_split``/``dataframe_records`` body, else None."""
    try:
        doc = _decode(body)
    except msgspec.DecodeError:
        return None
    if not isinstance(doc, dict) or len(doc) != 1:
        return None
    if "dataframe_split" in doc:
        split = doc["dataframe_split"]
        if not isinstance(split, dict) or set(split) != {"columns", "data"}:
            return None
        columns, rows = split["columns"], split["data"]
    elif "dataframe_records" in doc:
        rows = doc["dataframe_records"]
        if (
            not isinstance(rows, list)
            or not rows
            or not all(isinstance(r, dict) and len(r) == len(names) for r in rows)
        ):
            return None
        columns = names
        try:
            rows = [[r[n] for n in names] for r in rows]
        except KeyError:
            return None
    else:
        return None
    if (
        not isinstance(columns, list)
        or sorted(columns) != sorted(names)
        or not isinstance(rows, list)
        or not rows
    ):
        return None
    try:
        table = np.asarray(rows)
    except ValueError:
        return None
    if table.ndim != 2 or table.shape[1] != len(columns) or table.dtype.kind not in "if":
        return None  # ragged rows, strings, nulls, booleans: MLflow's parser decides
    return [(name, table[:, i]) for i, name in enumerate(columns)]


def predictions_json(result: PredictResult) -> bytes:
    """``{"predictions": ...}`` shaped as MLflow's ``predictions_to_json`` shapes each kind."""
    outputs = [(name, arr.tolist()) for name, arr in result.outputs]
    predictions: Any
    if result.kind == "json":
        predictions = result.json
    elif result.kind == "dataframe":
        rows = len(outputs[0][1]) if outputs else 0
        predictions = [{n: v[i] for n, v in outputs} for i in range(rows)]
    elif result.kind == "dict":
        predictions = dict(outputs)
    elif result.kind == "scalar":
        predictions = outputs[0][1][0]
    else:  # ndarray, list, series
        predictions = outputs[0][1]
    return _encode({"predictions": predictions})


async def ping(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    if not dp.ready():
        raise ModelNotReady("the model is not ready yet")
    return HttpResponse(200, b"\n")


async def version(dp: DataPlane, req: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    # mlflow models serve answers with its MLflow version: the one the worker runs.
    model = dp.only_model()
    return HttpResponse(200, str(model.pool.load_info.get("mlflow") or "unknown").encode())
