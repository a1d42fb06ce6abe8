"""MLflow scoring in the core: which bodies may skip MLflow's parser, how predictions are
shaped then, and the MLflow scoring body a KServe V1 request becomes.

Parsing and shaping normally run in the worker with the model environment's own MLflow,
so answers equal what ``mlflow models serve`` of that version gives. One exception, for
speed: a plain numeric ``dataframe_split`` or ``dataframe_records`` body for a model whose
signature is all numeric columns is read here into columns and takes the same path as V2
(batching included); anything unusual, or any doubt, goes to the worker's MLflow.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from modelport.errors import InvalidInput
from modelport.limits import check_decoded_size, check_json_depth
from modelport.mlmodel.types import ModelSpec
from modelport.workers.ipc import PredictResult

JSON = "application/json"
# Content-Type values whose bodies may take the fast path; any other goes to MLflow.
PLAIN_JSON = frozenset(
    {"application/json", "application/json; charset=utf-8", "application/json;charset=utf-8"}
)
_encode = msgspec.json.encode


def read_table(
    body: bytes, content_type: str | None, names: list[str] | None
) -> list[tuple[str, np.ndarray]] | None:
    """What the core checks of an /invocations body: JSON nesting (MLflow's parser in the
    worker would fail past its recursion limit, a server error), and the numeric table when
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


# --- KServe V1 ------------------------------------------------------------------------------
# A V1 body (``instances`` or ``inputs``) is also a valid MLflow scoring body, and V1's
# ``{"predictions": ...}`` is MLflow's response, so V1 prediction is MLflow scoring.


def v1_scoring_body(raw: bytes, spec: ModelSpec, mlflow_1: bool = False) -> bytes:
    """Check a V1 predict body; return the MLflow scoring body the worker reads.

    The core decodes the whole body (so its size bounds what that allocates) and builds
    no tensors: MLflow in the worker does. Nesting is checked first so the worker's
    parser never recurses past its limit. ``mlflow_1``: the worker runs MLflow 1.x, whose
    parser reads rows as ``{"columns", "data"}`` (it has no ``dataframe_split``) and no params.
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
    if mlflow_1 and "params" in body:
        raise InvalidInput("params need a model served by MLflow 2.6 or newer; this one runs MLflow 1.x")
    return _as_split(body, spec, mlflow_1) or raw


def v1_predictions(body: bytes) -> bytes:
    """The V1 answer of MLflow 1.x's scoring output, a bare list: ``{"predictions": [...]}``."""
    stripped = body.lstrip()
    return b'{"predictions":' + body + b"}" if stripped[:1] == b"[" else body


def _as_split(body: dict[str, Any], spec: ModelSpec, mlflow_1: bool = False) -> bytes | None:
    """Rows as lists for a model with named columns: what KServe V1 clients send."""
    sig = spec.signature
    key = "instances" if "instances" in body else "inputs"
    rows = body[key]
    if sig is None or sig.input_kind != "columns" or not isinstance(rows, list) or not rows:
        return None
    names = [f.name for f in sig.inputs]
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {len(names)} or not all(names):
        return None
    if mlflow_1:
        return _encode({"columns": names, "data": rows})
    scoring: dict[str, Any] = {"dataframe_split": {"columns": names, "data": rows}}
    if "params" in body:
        scoring["params"] = body["params"]
    return _encode(scoring)
