"""The scikit-learn fast path inside the worker: the same answers as pyfunc.predict, faster, and
never for input it cannot answer the way MLflow does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn

from modelport.workers.ipc import encode_predict

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "modelport" / "_runtime"))
from modelport_worker.model import LoadedModel, WorkerError  # noqa: E402

COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@pytest.fixture(scope="module")
def model(iris_model: Path) -> LoadedModel:
    loaded = LoadedModel(str(iris_model))
    loaded.warm_up()
    assert loaded.fast is not None  # verified against pyfunc.predict on the saved example
    return loaded


def _frame(row: tuple[float, ...]) -> tuple[dict[str, Any], list[Any]]:
    header, buffers = encode_predict([(n, np.array([v])) for n, v in zip(COLUMNS, row)], "frame", None)
    return header, [memoryview(bytes(memoryview(b).cast("B"))) for b in buffers]


def test_finite_rows_take_the_fast_path_and_leave_sklearn_config_alone(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert model.fast is not None
    seen: list[bool] = []
    estimator = model.fast.fn

    def spy(x: Any) -> Any:
        seen.append(sklearn.get_config()["assume_finite"])
        return estimator(x)

    monkeypatch.setattr(model.fast, "fn", spy)
    reply, _ = model.predict(*_frame((5.9, 3.0, 5.1, 1.8)))
    assert reply["kind"] == "ndarray"
    assert seen == [True]  # scikit-learn's own finiteness check skipped: this path checked
    assert sklearn.get_config()["assume_finite"] is False  # and the setting put back


def test_nan_takes_the_full_path_answered_as_mlflow_does_and_keeps_the_fast_path(
    model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert model.fast is not None
    calls: list[int] = []
    estimator = model.fast.fn
    monkeypatch.setattr(model.fast, "fn", lambda x: calls.append(1) or estimator(x))
    for _ in range(5):  # a client sending NaN again and again
        with pytest.raises(WorkerError) as err:
            model.predict(*_frame((float("nan"), 3.0, 5.1, 1.8)))
        assert err.value.code == "invalid_input"
        assert "NaN" in err.value.message
    assert calls == []  # never given to the estimator with its check off
    assert model.fast.failures == 0  # nor counted against the fast path
    model.predict(*_frame((5.9, 3.0, 5.1, 1.8)))
    assert calls == [1]
