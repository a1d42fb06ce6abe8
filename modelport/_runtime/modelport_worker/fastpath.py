"""A verified shortcut for scikit-learn models with all-numeric column signatures.

``pyfunc.predict`` spends most of a small request building and checking a DataFrame.
When the columns already match the signature (the server checked and cast them), the
estimator can take the 2-D array directly. The shortcut is enabled only after it gave
the same answer as ``pyfunc.predict`` on the saved input example and on a zero row, and
any failure falls back to the full path.

Inputs that are all finite (checked here, in one pass) are predicted with scikit-learn's
``assume_finite``: its own check is the costliest step of a one-row predict. Inputs with NaN
or infinity take the full path, which answers them as MLflow does.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

NUMERIC = {"double", "float", "long", "integer", "boolean"}


def build(pyfunc_model: Any, example: Any) -> Optional["SklearnFastPath"]:
    meta = pyfunc_model.metadata
    if "sklearn" not in meta.flavors:
        return None
    schema = meta.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    columns = schema.inputs
    if any(getattr(c, "optional", False) or not getattr(c, "required", True) for c in columns):
        return None
    if any(str(getattr(c.type, "name", c.type)) not in NUMERIC for c in columns):
        return None
    impl = getattr(pyfunc_model, "_model_impl", None)
    estimator = getattr(impl, "sklearn_model", impl)
    predict_fn = meta.flavors.get("python_function", {}).get("predict_fn", "predict")
    fn = getattr(estimator, predict_fn or "predict", None)
    if fn is None or not type(estimator).__module__.startswith("sklearn"):
        return None
    fast = SklearnFastPath([c.name for c in columns], [c.type.to_numpy() for c in columns], fn)
    return fast if fast.agrees(pyfunc_model, example) else None


def _finite_config() -> Tuple[Callable[..., Any], bool]:
    import sklearn

    return sklearn.set_config, bool(sklearn.get_config().get("assume_finite"))


class SklearnFastPath:
    def __init__(self, names: List[str], dtypes: List[Any], fn: Callable[[Any], Any]) -> None:
        self.names = names
        self.dtypes = dtypes
        self.fn = fn
        self.failures = 0
        self.set_config, self.assume_finite = _finite_config()
        # The estimator was fitted on a DataFrame; an array of the same columns is equivalent.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")

    def accepts(self, arrays: List[Tuple[str, np.ndarray]], layout: str) -> bool:
        return (
            self.failures < 3
            and layout == "frame"
            and len(arrays) == len(self.names)
            and {n for n, _ in arrays} == set(self.names)
            and all(a.ndim == 1 and a.dtype.kind in "biuf" for _, a in arrays)
        )

    def predict(self, arrays: List[Tuple[str, np.ndarray]]) -> Any:
        """The estimator's answer; None for input with NaN or infinity (the full path's to answer)."""
        by_name: Dict[str, np.ndarray] = dict(arrays)
        x = np.column_stack([by_name[n] for n in self.names])
        if not np.isfinite(x).all():
            return None
        if self.assume_finite:
            return self.fn(x)
        self.set_config(assume_finite=True)
        try:
            return self.fn(x)
        finally:
            self.set_config(assume_finite=False)

    def agrees(self, pyfunc_model: Any, example: Any) -> bool:
        import pandas as pd

        frames = [pd.DataFrame({n: np.zeros(1, dtype=d) for n, d in zip(self.names, self.dtypes)})]
        if isinstance(example, pd.DataFrame) and list(example.columns) == self.names:
            frames.append(example)
        try:
            for frame in frames:
                expected = np.asarray(pyfunc_model.predict(frame))
                arrays = [(n, frame[n].to_numpy().astype(d)) for n, d in zip(self.names, self.dtypes)]
                got = np.asarray(self.predict(arrays))  # None for an example with NaN: no fast path
                if (
                    expected.shape != got.shape
                    or expected.dtype != got.dtype
                    or not np.array_equal(expected, got)
                ):
                    return False
        except Exception:
            return False
        return True
