"""The layout each flavor's loader really reads, flavor by flavor (docs/decisions-mlmodel.md).

Each case is the MLmodel a flavor's save_model writes (keys as in MLflow 1.30 and 3.x, and the
community flavors' own code) with the files that library writes: it must pass as saved, and
fail naming the file the loader opens when that file is taken away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelport.errors import LayoutError
from modelport.mlmodel import check_layout, read_model_spec


def _pyfunc(loader: str, **conf: Any) -> dict[str, Any]:
    return {
        "loader_module": loader,
        "python_version": "3.10.12",
        "env": {"virtualenv": "python_env.yaml"},
        **conf,
    }


# flavor case -> (flavors, files the library writes, the file whose absence must be named)
CASES: dict[str, tuple[dict[str, Any], list[str], str]] = {
    "sklearn": (
        {
            "python_function": _pyfunc("mlflow.sklearn", model_path="model.pkl"),
            "sklearn": {
                "pickled_model": "model.pkl",
                "sklearn_version": "1.3.2",
                "serialization_format": "cloudpickle",
            },
        },
        ["model.pkl"],
        "model.pkl",
    ),
    "xgboost": (
        {
            "python_function": _pyfunc("mlflow.xgboost", data="model.xgb"),
            "xgboost": {
                "data": "model.xgb",
                "xgb_version": "1.7.6",
                "model_class": "xgboost.sklearn.XGBRegressor",
            },
        },
        ["model.xgb"],
        "model.xgb",
    ),
    "lightgbm": (
        {
            "python_function": _pyfunc("mlflow.lightgbm", data="model.lgb"),
            "lightgbm": {
                "data": "model.lgb",
                "lgb_version": "4.1.0",
                "model_class": "lightgbm.basic.Booster",
            },
        },
        ["model.lgb"],
        "model.lgb",
    ),
    "catboost": (
        {
            "python_function": _pyfunc("mlflow.catboost", data="model.cb"),
            "catboost": {
                "data": "model.cb",
                "catboost_version": "1.2.2",
                "model_type": "CatBoostClassifier",
                "save_format": "cbm",
            },
        },
        ["model.cb"],
        "model.cb",
    ),
    "statsmodels": (
        {
            "python_function": _pyfunc("mlflow.statsmodels", data="model.statsmodels"),
            "statsmodels": {"data": "model.statsmodels", "statsmodels_version": "0.14.0"},
        },
        ["model.statsmodels"],
        "model.statsmodels",
    ),
    "prophet": (
        {
            "python_function": _pyfunc("mlflow.prophet", data="model.pr"),
            "prophet": {"data": "model.pr", "prophet_version": "1.1.5"},
        },
        ["model.pr"],
        "model.pr",
    ),
    "pmdarima": (
        {
            "python_function": _pyfunc("mlflow.pmdarima", data="model.pmd"),
            "pmdarima": {"data": "model.pmd", "pmdarima_version": "2.0.4"},
        },
        ["model.pmd"],
        "model.pmd",
    ),
    "diviner": (
        {
            "python_function": _pyfunc("mlflow.diviner", data="model.div"),
            "diviner": {
                "data": "model.div",
                "diviner_version": "0.1.1",
                "diviner_model_type": "GroupedProphet",
            },
        },
        ["model.div"],
        "model.div",
    ),
    "onnx": (
        {
            "python_function": _pyfunc("mlflow.onnx", data="model.onnx"),
            "onnx": {"data": "model.onnx", "onnx_version": "1.15.0", "providers": ["CPUExecutionProvider"]},
        },
        ["model.onnx"],
        "model.onnx",
    ),
    "fastai": (
        {
            "python_function": _pyfunc("mlflow.fastai", data="model.fastai"),
            "fastai": {"data": "model.fastai", "fastai_version": "2.7.13"},
        },
        ["model.fastai"],
        "model.fastai",
    ),
    # h2o.save_model writes a folder; MLflow adds h2o.yaml naming the model file in it.
    "h2o": (
        {
            "python_function": _pyfunc("mlflow.h2o", data="model.h2o"),
            "h2o": {"data": "model.h2o", "h2o_version": "3.44.0.3"},
        },
        ["model.h2o/h2o.yaml", "model.h2o/GBM_model_python_1700000000000_1"],
        "model.h2o/h2o.yaml",
    ),
    # nlp.to_disk: a folder with meta.json, config.cfg (spaCy 3) and one folder per component.
    "spacy": (
        {
            "python_function": _pyfunc("mlflow.spacy", data="model.spacy"),
            "spacy": {"data": "model.spacy", "spacy_version": "3.7.2"},
        },
        [
            "model.spacy/meta.json",
            "model.spacy/config.cfg",
            "model.spacy/tokenizer",
            "model.spacy/vocab/strings.json",
        ],
        "model.spacy/meta.json",
    ),
    # paddle.jit.save(prefix): model.pdiparams plus model.pdmodel (or model.json from Paddle 3).
    "paddle": (
        {
            "python_function": _pyfunc("mlflow.paddle", model_path="model"),
            "paddle": {"pickled_model": "model", "paddle_version": "2.6.0"},
        },
        ["model.pdiparams", "model.pdmodel", "model.pdiparams.info"],
        "model.pdiparams",
    ),
    # sktime's own flavor: pickled_model "model", and sktime.base.load() opens "model" + ".zip".
    "mlflow_sktime": (
        {
            "python_function": _pyfunc("sktime.utils.mlflow_sktime", model_path="model"),
            "mlflow_sktime": {
                "pickled_model": "model",
                "sktime_version": "0.24.1",
                "serialization_format": "pickle",
            },
        },
        ["model.zip"],
        "model.zip",
    ),
    # mlflavors' sktime flavor pickles to the full name it records.
    "sktime (mlflavors)": (
        {
            "python_function": _pyfunc("mlflavors.sktime", model_path="model.pkl"),
            "sktime": {
                "pickled_model": "model.pkl",
                "sktime_version": "0.16.1",
                "serialization_format": "pickle",
            },
        },
        ["model.pkl"],
        "model.pkl",
    ),
    "keras 1.x h5": (
        {
            "python_function": _pyfunc("mlflow.keras", data="data"),
            "keras": {
                "data": "data",
                "keras_module": "tensorflow.keras",
                "keras_version": "2.9.0",
                "save_format": "h5",
            },
        },
        ["data/model.h5", "data/keras_module.txt", "data/save_format.txt"],
        "data/model.h5",
    ),
    "keras 3.x": (
        {
            "python_function": _pyfunc("mlflow.keras", data="data"),
            "keras": {
                "data": "data",
                "keras_version": "3.0.5",
                "keras_backend": "tensorflow",
                "save_exported_model": False,
            },
        },
        ["data/model.keras", "data/keras_module.txt"],
        "data/model.keras",
    ),
    "keras 3.x exported": (
        {
            "python_function": _pyfunc("mlflow.keras", data="data"),
            "keras": {
                "data": "data",
                "keras_version": "3.0.5",
                "keras_backend": "tensorflow",
                "save_exported_model": True,
            },
        },
        ["data/model/saved_model.pb", "data/model/variables/variables.index", "data/keras_module.txt"],
        "data/model",
    ),
    "tensorflow 2.x keras": (
        {
            "python_function": _pyfunc("mlflow.tensorflow", data="data"),
            "tensorflow": {
                "data": "data",
                "model_type": "keras",
                "keras_version": "2.16.1",
                "save_format": "tf",
            },
        },
        ["data/model.keras", "data/keras_module.txt", "data/save_format.txt"],
        "data/model.keras",
    ),
    "tensorflow savedmodel": (
        {
            "python_function": _pyfunc("mlflow.tensorflow"),
            "tensorflow": {
                "saved_model_dir": "tfmodel",
                "meta_graph_tags": ["serve"],
                "signature_def_key": "serving_default",
            },
        },
        ["tfmodel/saved_model.pb", "tfmodel/variables/variables.index"],
        "tfmodel",
    ),
    "spark": (
        {
            "python_function": _pyfunc("mlflow.spark", data="sparkml"),
            "spark": {
                "model_data": "sparkml",
                "pyspark_version": "3.5.0",
                "model_class": "pyspark.ml.pipeline.PipelineModel",
            },
        },
        ["sparkml/metadata/part-00000", "sparkml/stages/0_x/metadata/part-00000"],
        "sparkml",
    ),
    "johnsnowlabs": (
        {
            "python_function": _pyfunc("mlflow.johnsnowlabs", data="jsl-model"),
            "johnsnowlabs": {
                "model_data": "jsl-model",
                "pyspark_version": "3.4.1",
                "model_class": "pyspark.ml.pipeline.PipelineModel",
            },
        },
        ["jsl-model/metadata/part-00000", "jars.jsl/spark-nlp.jar"],
        "jsl-model",
    ),
    "pytorch": (
        {
            "python_function": _pyfunc(
                "mlflow.pytorch", data="data", pickle_module_name="mlflow.pytorch.pickle_module"
            ),
            "pytorch": {"model_data": "data", "pytorch_version": "2.1.0"},
        },
        ["data/model.pth", "data/pickle_module_info.txt"],
        "data/pickle_module_info.txt",
    ),
    "custom pyfunc": (
        {
            "python_function": _pyfunc(
                "mlflow.pyfunc.model",
                python_model="python_model.pkl",
                cloudpickle_version="3.0.0",
                artifacts={"vocab": {"path": "artifacts/vocab.txt", "uri": "/tmp/vocab.txt"}},
            )
        },
        ["python_model.pkl", "artifacts/vocab.txt"],
        "artifacts/vocab.txt",
    ),
}


def _folder(tmp_path: Path, flavors: dict[str, Any], files: list[str]) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors, "mlflow_version": "2.9.2"}))
    for rel in files:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"\x80\x04model bytes")
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_flavor_layout_as_its_library_writes_it(tmp_path: Path, case: str) -> None:
    flavors, files, _ = CASES[case]
    folder = _folder(tmp_path, flavors, files)
    check_layout(folder, read_model_spec(folder))


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_file_its_loader_opens_is_required(tmp_path: Path, case: str) -> None:
    flavors, files, needed = CASES[case]
    folder = _folder(tmp_path, flavors, [f for f in files if f != needed and not f.startswith(needed + "/")])
    with pytest.raises(LayoutError) as info:
        check_layout(folder, read_model_spec(folder))
    assert needed in info.value.message, info.value.message


def test_sktime_model_without_zip_is_not_the_prefix(tmp_path: Path) -> None:
    # A file "model" with no suffix is what sktime's load() does not open.
    flavors, _, _ = CASES["mlflow_sktime"]
    folder = _folder(tmp_path, flavors, ["model"])
    with pytest.raises(LayoutError, match=r"model\.zip \(mlflow_sktime\.pickled_model\) is missing"):
        check_layout(folder, read_model_spec(folder))
