"""What a model that carries no environment files needs, read from its MLmodel; and the moment it
was saved, so that what its files leave unpinned resolves as it did on the training machine.

MLmodel records each flavor's library version (``sklearn_version``, ``xgb_version``...), the MLflow
that saved it and, in python_function, the saving Python: enough for a working environment.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelport.mlmodel.types import ModelSpec

# flavor -> (key in its MLmodel section, PyPI distribution), as each flavor's save_model writes it.
FLAVOR_VERSIONS: dict[str, tuple[str, str]] = {
    "sklearn": ("sklearn_version", "scikit-learn"),
    "xgboost": ("xgb_version", "xgboost"),
    "lightgbm": ("lgb_version", "lightgbm"),
    "catboost": ("catboost_version", "catboost"),
    "pytorch": ("pytorch_version", "torch"),
    "keras": ("keras_version", "keras"),
    # mlflow.tensorflow records tf.__version__ under keras_version for Keras models.
    "tensorflow": ("keras_version", "tensorflow"),
    "onnx": ("onnx_version", "onnx"),
    "statsmodels": ("statsmodels_version", "statsmodels"),
    "spark": ("pyspark_version", "pyspark"),
    "h2o": ("h2o_version", "h2o"),
    "prophet": ("prophet_version", "prophet"),
    "pmdarima": ("pmdarima_version", "pmdarima"),
    "diviner": ("diviner_version", "diviner"),
    "spacy": ("spacy_version", "spacy"),
    "fastai": ("fastai_version", "fastai"),
    "paddle": ("paddle_version", "paddlepaddle"),
    "shap": ("shap_version", "shap"),
    "transformers": ("transformers_version", "transformers"),
    "sentence_transformers": ("sentence_transformers_version", "sentence-transformers"),
    "langchain": ("langchain_version", "langchain"),
    "openai": ("openai_version", "openai"),
    "llama_index": ("llama_index_version", "llama-index"),
    "sktime": ("sktime_version", "sktime"),
    "mlflow_sktime": ("sktime_version", "sktime"),  # sktime's own flavor (sktime.utils.mlflow_sktime)
    # A custom pyfunc model is a cloudpickle: loading it needs the cloudpickle that wrote it.
    "python_function": ("cloudpickle_version", "cloudpickle"),
}

# Libraries a flavor's loader imports that its MLmodel does not record: the newest of their day.
_COMPANIONS: dict[str, tuple[str, ...]] = {"onnx": ("onnxruntime",)}


def infer_requirements(spec: ModelSpec) -> list[str]:
    """Requirement lines for a model without environment files, from its flavors' recorded versions."""
    out: dict[str, str] = {}
    for flavor, conf in spec.flavors.items():
        key, dist = FLAVOR_VERSIONS.get(flavor, (f"{flavor}_version", flavor.replace("_", "-")))
        if key in conf:
            out.setdefault(canonicalize_name(dist), _pinned(dist, conf.get(key)))
        for dist in _companions(flavor, conf):
            out.setdefault(canonicalize_name(dist), dist)
    return list(out.values())


def _companions(flavor: str, conf: dict[str, Any]) -> tuple[str, ...]:
    if flavor == "keras" and (
        str(conf.get("keras_module", "")).startswith("tensorflow") or conf.get("backend") == "tensorflow"
    ):
        return ("tensorflow",)
    if flavor == "transformers":
        return {"pt": ("torch",), "tf": ("tensorflow",)}.get(str(conf.get("framework")), ())
    return _COMPANIONS.get(flavor, ())


def _pinned(dist: str, value: Any) -> str:
    # "2.1.0+cu121": the local part names a build PyPI does not carry.
    text = str(value or "").split("+", 1)[0].strip()
    try:
        Version(text)
    except InvalidVersion:
        return dist
    return f"{dist}=={text}"


def created_at(spec: ModelSpec) -> str | None:
    """MLmodel's ``utc_time_created`` as an RFC 3339 instant (uv's ``--exclude-newer``), or None."""
    value = spec.raw.get("utc_time_created")
    if isinstance(value, datetime):  # YAML may already have read it as a timestamp
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    if moment.year < 2018:  # before MLflow existed: not a real creation time
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
