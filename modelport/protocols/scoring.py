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

from modelport.errors import ModelNotReady
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
    names = dp.table_columns() if content_type in _PLAIN_JSON else None
    arrays = numeric_table(req.body, names) if names else None
    if arrays is not None:
        result = await dp.predict_table(arrays)
        if result is not None:
            return HttpResponse(200, predictions_json(result))
    raw = await dp.invocations(req.body, content_type)
    return HttpResponse(raw.status, raw.body, raw.content_type.encode())


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
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return None
    if sorted(columns) != sorted(names) or not isinstance(rows, list) or not rows:
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
    return HttpResponse(200, str(dp.mlflow_version() or "unknown").encode())
