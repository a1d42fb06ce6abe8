"""The protocol-neutral core in-process, with a fake model behind it: which /invocations
bodies take the fast path and which go to the worker's MLflow, how predictions are shaped,
and the MLflow scoring body a V1 request becomes. No worker, no HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelport.dataplane import DataPlane
from modelport.errors import InvalidInput, ModelNotFound
from modelport.inference import ScoreResult
from modelport.mlmodel.spec import read_model_spec
from modelport.mlmodel.types import ModelSpec
from modelport.scoring import numeric_table, predictions_json, v1_scoring_body
from modelport.workers.batching import PredictCall, PredictResult

IRIS = Path(__file__).resolve().parent.parent / "examples" / "iris"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
MLFLOW_ANSWER = ScoreResult("application/json", b'{"predictions": "from mlflow"}')


class FakeModel:
    """What DataPlane asks of a ServedModel; records how it was asked."""

    def __init__(self, spec: ModelSpec, numeric_columns: list[str] | None, refuse: bool = False) -> None:
        self.name = "m"
        self.version = None
        self.spec = spec
        self.numeric_columns = numeric_columns
        self.refuse = refuse
        self.calls: list[tuple[str, Any]] = []
        self.users = 0  # held by the dataplane while a request runs
        self.mlflow_1 = False  # its workers run MLflow 2 or 3
        self.last_used = 0.0

    def table_call(self, arrays: list[tuple[str, np.ndarray]], params: dict[str, Any] | None) -> PredictCall:
        if self.refuse:
            raise InvalidInput("does not fit")
        return PredictCall(arrays, "frame", params, len(arrays[0][1]))

    async def predict(self, call: PredictCall, deadline: float | None = None) -> PredictResult:
        self.calls.append(("predict", [n for n, _ in call.arrays]))
        return PredictResult("ndarray", [("", np.arange(call.rows))])

    async def score_with_mlflow(
        self, body: bytes, content_type: str | None, deadline: float | None = None
    ) -> ScoreResult:
        self.calls.append(("mlflow", (body, content_type)))
        return MLFLOW_ANSWER


@pytest.fixture(scope="module")
def iris_spec() -> ModelSpec:
    return read_model_spec(IRIS)


def _score(model: FakeModel, body: Any, content_type: str | None = "application/json") -> ScoreResult:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return asyncio.run(DataPlane({"m": model}).score(None, raw, content_type))  # type: ignore[dict-item]


def test_numeric_tables_take_the_fast_path(iris_spec: ModelSpec) -> None:
    for body in (
        {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        {"dataframe_records": [dict(zip(COLUMNS, r)) for r in ROWS]},
        {"dataframe_split": {"columns": COLUMNS[::-1], "data": [r[::-1] for r in ROWS]}},
    ):
        model = FakeModel(iris_spec, COLUMNS)
        result = _score(model, body)
        assert (result.content_type, result.body) == ("application/json", b'{"predictions":[0,1]}')
        assert [kind for kind, _ in model.calls] == ["predict"]
    model = FakeModel(iris_spec, COLUMNS)
    _score(model, {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, "application/json; charset=utf-8")
    assert model.calls[0][0] == "predict"


@pytest.mark.parametrize(
    ("body", "content_type", "columns", "refuse"),
    [
        ({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, "text/csv", COLUMNS, False),
        ({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, "application/json", None, False),
        ({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}, "application/json", COLUMNS, True),
        (
            {"dataframe_split": {"columns": COLUMNS, "data": [[5.1, None, 1.4, 0.2]]}},
            "application/json",
            COLUMNS,
            False,
        ),
        (
            {"dataframe_split": {"columns": COLUMNS[:3], "data": [r[:3] for r in ROWS]}},
            "application/json",
            COLUMNS,
            False,
        ),
        (
            {"dataframe_split": {"columns": COLUMNS, "index": [0, 1], "data": ROWS}},
            "application/json",
            COLUMNS,
            False,
        ),
        ({"dataframe_split": {"columns": COLUMNS, "data": []}}, "application/json", COLUMNS, False),
        ({"instances": ROWS}, "application/json", COLUMNS, False),
        (
            {"dataframe_split": {"columns": COLUMNS, "data": ROWS}, "params": {"a": 1}},
            "application/json",
            COLUMNS,
            False,
        ),
    ],
    ids=[
        "csv",
        "not-numeric-signature",
        "refused-by-signature",
        "null",
        "missing-column",
        "index",
        "empty",
        "instances",
        "params",
    ],
)
def test_anything_else_goes_to_mlflow(
    iris_spec: ModelSpec, body: Any, content_type: str, columns: list[str] | None, refuse: bool
) -> None:
    model = FakeModel(iris_spec, columns, refuse)
    assert _score(model, body, content_type) is MLFLOW_ANSWER
    assert [kind for kind, _ in model.calls] == ["mlflow"]
    assert model.calls[0][1][1] == content_type


def test_deep_json_is_refused_before_any_model_sees_it(iris_spec: ModelSpec) -> None:
    model = FakeModel(iris_spec, COLUMNS)
    with pytest.raises(InvalidInput, match="nested 300 levels deep"):
        _score(model, b"[" * 300 + b"]" * 300)
    assert model.calls == []
    # Another content type is MLflow's to read, and to refuse.
    assert _score(model, b"[" * 300, "text/csv") is MLFLOW_ANSWER


def test_scoring_picks_the_only_model_or_the_named_one(iris_spec: ModelSpec) -> None:
    a, b = FakeModel(iris_spec, None), FakeModel(iris_spec, None)
    dp = DataPlane({"a": a, "b": b})  # type: ignore[dict-item]
    with pytest.raises(ModelNotFound, match="only model .* has 2"):
        asyncio.run(dp.score(None, b"{}", "application/json"))
    asyncio.run(dp.score("b", b"{}", "application/json"))
    assert a.calls == [] and len(b.calls) == 1
    with pytest.raises(ModelNotFound):
        asyncio.run(dp.score("c", b"{}", "application/json"))


def test_predict_v1_sends_rows_as_a_table_for_named_columns(iris_spec: ModelSpec) -> None:
    model = FakeModel(iris_spec, COLUMNS)
    dp = DataPlane({"m": model})  # type: ignore[dict-item]
    body = asyncio.run(dp.predict_v1("m", json.dumps({"instances": ROWS, "params": {"k": 1}}).encode()))
    assert body == MLFLOW_ANSWER.body
    sent, content_type = model.calls[0][1]
    assert content_type == "application/json"
    assert json.loads(sent) == {"dataframe_split": {"columns": COLUMNS, "data": ROWS}, "params": {"k": 1}}


def test_v1_bodies_pass_through_or_are_refused(iris_spec: ModelSpec) -> None:
    records = json.dumps({"instances": [dict(zip(COLUMNS, r)) for r in ROWS]}).encode()
    assert v1_scoring_body(records, iris_spec) == records
    short = json.dumps({"inputs": [[1.0, 2.0]]}).encode()
    assert v1_scoring_body(short, iris_spec) == short
    with pytest.raises(InvalidInput, match="not valid JSON"):
        v1_scoring_body(b"[1,", iris_spec)
    with pytest.raises(InvalidInput, match='"instances" or "inputs"'):
        v1_scoring_body(b'{"rows": []}', iris_spec)
    with pytest.raises(InvalidInput, match="nested"):
        v1_scoring_body(b'{"instances":' + b"[" * 300 + b"]" * 300 + b"}", iris_spec)


def test_numeric_table_reads_columns_in_signature_terms() -> None:
    body = json.dumps({"dataframe_records": [{"b": 2, "a": 1.5}]}).encode()
    arrays = numeric_table(body, ["a", "b"])
    assert arrays is not None
    assert [(n, a.tolist()) for n, a in arrays] == [("a", [1.5]), ("b", [2.0])]
    assert numeric_table(b'{"dataframe_split": null}', ["a"]) is None
    assert numeric_table(b'{"dataframe_split": {"columns": ["a"], "data": [[true]]}}', ["a"]) is None


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (PredictResult("ndarray", [("", np.array([1, 2]))]), [1, 2]),
        (PredictResult("series", [("x", np.array([1.5]))]), [1.5]),
        (
            PredictResult("dataframe", [("a", np.array([1, 2])), ("b", np.array(["x", "y"], dtype=object))]),
            [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
        ),
        (PredictResult("dict", [("a", np.array([1])), ("b", np.array([2.5]))]), {"a": [1], "b": [2.5]}),
        (PredictResult("scalar", [("", np.array([7]))]), 7),
        (PredictResult("json", [], json={"k": [1, "two"]}), {"k": [1, "two"]}),
    ],
    ids=["ndarray", "series", "dataframe", "dict", "scalar", "json"],
)
def test_predictions_are_shaped_per_kind(result: PredictResult, expected: Any) -> None:
    assert json.loads(predictions_json(result)) == {"predictions": expected}
