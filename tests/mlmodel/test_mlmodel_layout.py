"""check_layout over real folders: complete models, missing files, flattened and nested copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import LayoutError
from modelport.mlmodel import check_layout, missing_env_files, read_model_spec, required_paths


def _check(folder: Path) -> None:
    check_layout(folder, read_model_spec(folder))


def _error(folder: Path) -> str:
    with pytest.raises(LayoutError) as info:
        _check(folder)
    return info.value.message


@pytest.mark.parametrize(
    ("name", "entries"),
    [
        ("sklearn-1.14", ["model.pkl", "conda.yaml"]),
        ("sklearn-3.9-skops", ["model.skops"]),
        ("xgboost-1.30", ["model.xgb"]),
        ("pytorch-2.16-tensor", ["data/model.pth", "data/pickle_module_info.txt"]),
        ("pytorch-2.16-tensor", ["data/model.pt2"]),
        ("tensorflow-2.11-named-tensors", ["tf2model/saved_model.pb"]),
        (
            "custom-pyfunc-2.9",
            ["python_model.pkl", "code/util.py", "artifacts/tokenizer.json", "artifacts/weights/"],
        ),
        ("pyfunc-2.6-params-dtype", ["python_model.pkl"]),
    ],
)
def test_complete_layouts_pass(make_model_dir, name: str, entries: list[str]) -> None:
    _check(make_model_dir(name, *entries))


def test_missing_model_pkl_lists_folder(make_model_dir) -> None:
    folder = make_model_dir("sklearn-2.5-optional", "conda.yaml", "requirements.txt", "model.joblib")
    message = _error(folder)
    assert "model.pkl (sklearn.pickled_model) is missing" in message
    assert "The model folder holds: MLmodel, conda.yaml, model.joblib, requirements.txt" in message
    # Reported once though python_function.model_path names the same file.
    assert message.count("model.pkl (") == 1


def test_flattened_pytorch_folder(make_model_dir) -> None:
    # What an S3 copy that drops prefixes leaves behind (kserve/kserve#4341).
    folder = make_model_dir("pytorch-2.16-tensor", "model.pth", "pickle_module_info.txt", "conda.yaml")
    message = _error(folder)
    assert "data/model.pth or data/model.pt2 (pytorch.model_data) is missing" in message
    assert "model.pth sits at the model root instead: the folder looks flattened" in message
    assert "KServe's storage initializer" in message
    assert "data/ does not exist" in message


def test_flattened_exported_pytorch(make_model_dir) -> None:
    message = _error(make_model_dir("pytorch-2.16-tensor", "model.pt2"))
    assert "model.pt2 sits at the model root instead" in message


def test_pytorch_pickle_without_module_info(make_model_dir) -> None:
    message = _error(make_model_dir("pytorch-2.16-tensor", "data/model.pth"))
    assert "data/pickle_module_info.txt (pytorch.model_data) is missing" in message
    assert "data/ holds: model.pth" in message


def test_pytorch_empty_data_folder(make_model_dir) -> None:
    message = _error(make_model_dir("pytorch-2.16-tensor", "data/"))
    assert "data/model.pth or data/model.pt2" in message
    assert "data/ holds: (empty)" in message


def test_file_nested_in_subfolder(make_model_dir) -> None:
    # KServe 0.11 put model.pkl in model/ next to a root MLmodel (kserve/kserve#3200).
    message = _error(make_model_dir("sklearn-1.14", "model/model.pkl", "conda.yaml"))
    assert "it sits at model/model.pkl instead" in message
    assert "kserve/kserve#3200" in message


def test_whole_model_one_level_deeper(make_model_dir, tmp_path: Path) -> None:
    folder = make_model_dir("sklearn-1.14", "conda.yaml")
    inner = make_model_dir("sklearn-1.14", "model.pkl", root="model/model")
    assert inner.parent == folder
    message = _error(folder)
    assert "the model seems to be in model/, so point the model URI at that folder" in message


def test_custom_pyfunc_missing_code_and_artifact(make_model_dir) -> None:
    folder = make_model_dir("custom-pyfunc-2.9", "python_model.pkl", "artifacts/tokenizer.json", "util.py")
    message = _error(folder)
    assert "code (python_function.code) is missing" in message
    assert "artifacts/weights (python_function artifact 'weights') is missing" in message
    assert "artifacts/ holds: tokenizer.json" in message
    assert "tokenizer" not in message.split(";")[0]


def test_code_must_be_a_folder(make_model_dir) -> None:
    folder = make_model_dir(
        "custom-pyfunc-2.9", "python_model.pkl", "code", "artifacts/tokenizer.json", "artifacts/weights/"
    )
    assert "code (python_function.code) should be a folder" in _error(folder)


def test_model_code_path_uses_basename(make_model_dir) -> None:
    text = (
        "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"
        "    model_code_path: /Users/bob/project/agent.py\n    python_version: 3.11.9\n"
    )
    assert "agent.py (python_function.model_code_path) is missing" in _error(make_model_dir(text))
    _check(make_model_dir(text, "agent.py"))


def test_generic_flavor_paths(make_model_dir) -> None:
    text = (
        "flavors:\n  python_function:\n    loader_module: mlflow.lightgbm\n    data: model.lgb\n"
        "    python_version: 3.10.1\n  lightgbm:\n    data: model.lgb\n    code: null\n"
        "    lgb_version: 4.3.0\n"
    )
    assert "model.lgb (lightgbm.data) is missing" in _error(make_model_dir(text))


PADDLE = (
    "flavors:\n  paddle:\n    code: null\n    paddle_version: 2.6.1\n    pickled_model: model\n"
    "  python_function:\n    loader_module: mlflow.paddle\n    model_path: model\n    python_version: 3.10.4\n"
)


def test_paddle_path_is_a_prefix(make_model_dir) -> None:
    _check(make_model_dir(PADDLE, "model.pdiparams", "model.pdmodel"))
    message = _error(make_model_dir(PADDLE, "model.pdmodel", root="broken"))
    assert "model.pdiparams (paddle.pickled_model) is missing" in message


def test_path_outside_model_folder(make_model_dir) -> None:
    text = "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: ../secret.pkl\n"
    assert "../secret.pkl (python_function.model_path) points outside the model folder" in _error(
        make_model_dir(text)
    )


def test_absolute_and_uri_values_are_not_paths(make_model_dir) -> None:
    text = (
        "flavors:\n  python_function:\n    loader_module: m\n    data: s3://b/k\n  other:\n"
        "    data: /abs/path\n    code: null\n    model_path: ''\n"
    )
    folder = make_model_dir(text)
    assert required_paths(folder, read_model_spec(folder)) == []


def test_missing_env_files_are_only_reported(make_model_dir) -> None:
    folder = make_model_dir("sklearn-2.5-optional", "model.pkl", "conda.yaml")
    spec = read_model_spec(folder)
    check_layout(folder, spec)  # no error: the loader does not open them
    assert missing_env_files(folder, spec) == ["python_env.yaml"]


def test_long_listing_is_cut(make_model_dir) -> None:
    folder = make_model_dir("sklearn-1.14", *[f"f{i:02}.txt" for i in range(30)])
    assert "... and 11 more" in _error(folder)
