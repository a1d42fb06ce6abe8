"""parse_mlmodel / read_model_spec over literal MLmodel files from MLflow 1.14 to 3.x."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlmodel_cases import MLMODELS, mlmodel_text

from modelport.errors import ModelLoadError
from modelport.mlmodel import parse_mlmodel, read_model_spec

ALL = sorted(p.stem for p in MLMODELS.glob("*.yaml"))


@pytest.mark.parametrize("name", ALL)
def test_every_literal_parses(name: str) -> None:
    spec = parse_mlmodel(mlmodel_text(name), path=f"/models/{name}")
    assert spec.path == f"/models/{name}"
    assert "python_function" in spec.flavors
    assert spec.loader_module and spec.loader_module.startswith("mlflow.")
    assert spec.python_version and spec.python_version.startswith("3.")
    assert spec.raw["flavors"] == spec.flavors


@pytest.mark.parametrize(
    ("name", "primary", "mlflow_version", "loader"),
    [
        ("sklearn-1.14", "sklearn", None, "mlflow.sklearn"),
        ("xgboost-1.30", "xgboost", "1.30.0", "mlflow.xgboost"),
        ("sklearn-2.5-optional", "sklearn", "2.5.0", "mlflow.sklearn"),
        ("pyfunc-2.6-params-dtype", "python_function", "2.6.0", "mlflow.pyfunc.model"),
        ("pytorch-2.16-tensor", "pytorch", "2.16.1", "mlflow.pytorch"),
        ("tensorflow-2.11-named-tensors", "tensorflow", "2.11.3", "mlflow.tensorflow"),
        ("sklearn-3.9-skops", "sklearn", "3.9.2", "mlflow.sklearn"),
    ],
)
def test_versions_and_flavors(name: str, primary: str, mlflow_version: str | None, loader: str) -> None:
    spec = parse_mlmodel(mlmodel_text(name))
    assert spec.primary_flavor == primary
    assert spec.mlflow_version == mlflow_version
    assert spec.loader_module == loader


def test_mlflow_1x_without_signature_or_uuid() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-1.14"))
    assert spec.signature is None
    assert spec.model_uuid is None
    assert spec.model_id is None
    assert spec.run_id == "5c4b0a3e3c2e4b9a9c1f0d6e8a7b6c5d"
    assert spec.python_version == "3.7.9"
    # MLflow < 1.26 names only the conda file, as a plain string.
    assert spec.env_files == {"conda": "conda.yaml"}
    assert spec.input_example_path is None
    assert spec.metadata == {}


def test_mlflow_1x_signature_and_example() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-1.20-signature"))
    assert spec.input_example_path == "input_example.json"
    assert spec.signature is not None
    # YAML folds the long JSON string; the space inside the column name must survive.
    assert [f.name for f in spec.signature.inputs][:2] == ["sepal length (cm)", "sepal width (cm)"]


def test_mlflow_3x_model_id_and_env_dict() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-3.9-skops"))
    assert spec.model_id == "m-4b2f0c5a1e9d4f7a8c3b6e2d1a0f9c8b"
    assert spec.model_uuid == "m-4b2f0c5a1e9d4f7a8c3b6e2d1a0f9c8b"
    assert spec.run_id == "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert spec.env_files == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert spec.flavors["sklearn"]["pickled_model"] == "model.skops"
    # Keys this code does not know are kept in raw and otherwise ignored.
    assert spec.raw["is_signature_from_type_hint"] is False


def test_metadata_is_read() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-2.12-required-array"))
    assert spec.metadata == {"owner": "fraud-team", "stage": "candidate"}


def test_unknown_keys_and_flavors_are_tolerated() -> None:
    text = mlmodel_text("sklearn-3.9-skops") + "future_key: {a: 1}\n"
    text = text.replace("flavors:\n", "flavors:\n  brand_new_flavor: {weights: w.bin}\n")
    spec = parse_mlmodel(text)
    assert spec.flavors["brand_new_flavor"] == {"weights": "w.bin"}
    assert spec.primary_flavor == "brand_new_flavor"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("flavors: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "should be a YAML mapping"),
        ("", "should be a YAML mapping"),
        ("run_id: abc\n", "names no flavors"),
        ("flavors: {}\n", "names no flavors"),
    ],
)
def test_bad_mlmodel_text(text: str, fragment: str) -> None:
    with pytest.raises(ModelLoadError, match=fragment) as info:
        parse_mlmodel(text, path="/m/x")
    assert "/m/x" in info.value.message


def test_bad_signature_json_names_the_file() -> None:
    text = "flavors: {python_function: {loader_module: mlflow.sklearn}}\nsignature: {inputs: '[{oops'}\n"
    with pytest.raises(ModelLoadError, match=r"signature.inputs is not valid JSON.*at /m/y"):
        parse_mlmodel(text, path="/m/y")


def test_read_model_spec_adds_requirements(make_model_dir) -> None:
    folder = make_model_dir("sklearn-2.5-optional", "model.pkl", "requirements.txt", "conda.yaml")
    spec = read_model_spec(folder)
    assert spec.path == str(folder)
    assert spec.env_files == {
        "conda": "conda.yaml",
        "virtualenv": "python_env.yaml",
        "requirements": "requirements.txt",
    }


def test_read_model_spec_without_requirements(make_model_dir) -> None:
    spec = read_model_spec(make_model_dir("sklearn-1.14", "model.pkl"))
    assert "requirements" not in spec.env_files


def test_missing_mlmodel_lists_the_folder(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_text("x")
    (tmp_path / "data").mkdir()
    with pytest.raises(ModelLoadError) as info:
        read_model_spec(tmp_path)
    message = info.value.message
    assert f"no MLmodel file in {tmp_path}" in message
    assert "data/, model.pkl" in message


def test_missing_mlmodel_points_at_nested_model(tmp_path: Path) -> None:
    (tmp_path / "artifacts" / "model").mkdir(parents=True)
    (tmp_path / "artifacts" / "model" / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(ModelLoadError, match=r"An MLmodel sits in artifacts/model/"):
        read_model_spec(tmp_path)


def test_misnamed_mlmodel(tmp_path: Path) -> None:
    (tmp_path / "mlmodel").write_text("flavors: {}\n")
    with pytest.raises(ModelLoadError, match="named exactly 'MLmodel'"):
        read_model_spec(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_model_spec(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="is a file"):
        read_model_spec(tmp_path / "file")


def test_mlmodel_not_yaml_names_folder(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors:\n  a: [1,\n")
    with pytest.raises(ModelLoadError, match=rf"MLmodel at {tmp_path} is not valid YAML"):
        read_model_spec(tmp_path)


def test_mlmodel_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelLoadError, match="cannot read"):
        read_model_spec(tmp_path)


def test_mlflow_3_logged_model_fields() -> None:
    spec = parse_mlmodel(mlmodel_text("pyfunc-3.17-logged-model"))
    assert spec.model_id == "m-f8d79b60d5724d4187eaf0f912e46671" == spec.model_uuid
    assert spec.metadata == {"team": "x"}
    assert spec.raw["model_size_bytes"] == 2143 and spec.raw["prompts"] is None
    assert spec.raw["is_signature_from_type_hint"] is True
    assert spec.env_files == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert spec.signature is not None and [f.datatype for f in spec.signature.inputs] == ["BYTES"]


def test_databricks_integer_column_names_become_v2_names() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-3.4-databricks-int-columns"))
    assert spec.signature is not None
    assert [f.name for f in spec.signature.inputs] == ["0", "1", "2"]
    assert spec.model_id == "m-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
    assert spec.raw["databricks_runtime"].startswith("16.4")


def test_azureml_1x_model_has_conda_env_only() -> None:
    spec = parse_mlmodel(mlmodel_text("sklearn-1.29-azureml-skinny"))
    assert spec.env_files == {"conda": "conda.yaml"}
    assert spec.flavors["sklearn"]["sklearn_version"] == "0.22.1.post1"
    assert spec.run_id is not None and spec.run_id.startswith("AutoML_")
