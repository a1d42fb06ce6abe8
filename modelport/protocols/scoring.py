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
from modelport.protocols.codecs import (
    OFF_LOOP_BYTES,
    check_decoded_size,
    check_json_depth,
    off_loop,
)
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
    big = len(req.body) > OFF_LOOP_BYTES
    if big:
        arrays = await off_loop(read_body, req.body, content_type, names)
    else:
        arrays = read_body(req.body, content_type, names)
    if arrays is not None:
        result = await dp.predict_table(arrays)
        if result is not None:
            body = await off_loop(predictions_json, result) if big else predictions_json(result)
            return HttpResponse(200, body)
    raw = await dp.invocations(req.body, content_type)
    return HttpResponse(raw.status, raw.body, raw.content_type.encode())


_PLAIN_JSON = frozenset(
    {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
)
_encode = msgspec.json.encode


def read_body(
    body: bytes, content_type: str | None, names: list[str] | None
) -> list[tuple[str, np.ndarray]] | None:
    """What the front checks of an /invocations body: JSON nesting (MLflow's parser in the
    worker would fail past its recursion limit with a 500), and the numeric table when
    ``names`` allows the fast path."""
    if content_type is not None and content_type.partition(";")[0].strip().lower() == "application/json":
        check_json_depth(body)
    return numeric_table(body, names) if names else None


Number = int | float


class _Split(msgspec.Struct, forbid_unknown_fields=True):
    columns: list[str]
    data: list[list[Number]]


class _Table(msgspec.Struct, forbid_unknown_fields=True):
    # UNSET, not None: an explicit null is not a table, and MLflow should say so.
    dataframe_split: _Split | msgspec.UnsetType = msgspec.UNSET
    dataframe_records: list[dict[str, Number]] | msgspec.UnsetType = msgspec.UNSET


# Numbers only, checked while parsing: strings, nulls, booleans and nesting fail fast.
_table_decoder = msgspec.json.Decoder(_Table)


def numeric_table(body: bytes, names: list[str]) -> list[tuple[str, np.ndarray]] | None:
    """Columns of a numbers-only ``dataframe_split``/``dataframe_records`` body, else None."""
    try:
        doc = _table_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    split, records = doc.dataframe_split, doc.dataframe_records
    if isinstance(split, _Split) and records is msgspec.UNSET:
        columns, rows = split.columns, split.data
    elif isinstance(records, list) and split is msgspec.UNSET:
        if not records or set(map(len, records)) != {len(names)}:
            return None
        columns = names
        try:
            rows = [[r[n] for n in names] for r in records]
        except KeyError:
            return None
    else:
        return None  # neither, or both: MLflow's parser decides
    if sorted(columns) != sorted(names) or not rows or set(map(len, rows)) != {len(columns)}:
        return None
    # Each number took at least two bytes of JSON: the bound holds by construction; say so.
    check_decoded_size(len(rows) * len(columns) * 8, len(body))
    table = np.asarray(rows)
    if table.ndim != 2 or table.dtype.kind not in "if":
        return None  # integers past int64: MLflow's parser decides
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
