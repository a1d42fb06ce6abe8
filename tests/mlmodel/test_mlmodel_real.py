"""The mlmodel package against the installed MLflow: models it saves, MLmodel files it reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from mlmodel_cases import MLMODELS, mlmodel_text

from modelport.errors import LayoutError
from modelport.mlmodel import (
    check_layout,
    parse_mlmodel,
    read_model_spec,
    rewrite_for_mlflow,
    shadow_model_dir,
    to_v2_metadata,
)

mlflow = pytest.importorskip("mlflow")
pd = pytest.importorskip("pandas")
INSTALLED = mlflow.__version__


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
    from sklearn.linear_model import LinearRegression

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0]})
    model = LinearRegression().fit(frame, [2.0, 2.0, 4.0])
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", "a"), ColSpec("double", "b", required=False)]),
        outputs=Schema([ColSpec("double")]),
        params=ParamSchema([ParamSpec("scale", "double", 1.0)]),
    )
    path = tmp_path_factory.mktemp("real") / "sklearn"
    mlflow.sklearn.save_model(
        model, str(path), signature=signature, input_example=frame.head(1), pip_requirements=["scikit-learn"]
    )
    return path


def test_parses_a_model_saved_by_installed_mlflow(sklearn_model: Path) -> None:
    spec = read_model_spec(sklearn_model)
    assert spec.mlflow_version == INSTALLED
    assert spec.primary_flavor == "sklearn"
    assert spec.loader_module == "mlflow.sklearn"
    assert spec.model_uuid and spec.python_version
    assert spec.input_example_path == "input_example.json"
    assert (sklearn_model / spec.input_example_path).is_file()
    assert spec.env_files == {
        "conda": "conda.yaml",
        "virtualenv": "python_env.yaml",
        "requirements": "requirements.txt",
    }
    check_layout(sklearn_model, spec)
    assert spec.signature is not None
    assert [(f.name, f.datatype, f.required) for f in spec.signature.inputs] == [
        ("a", "FP64", True),
        ("b", "FP64", False),
    ]
    assert [(p.name, p.datatype, p.default) for p in spec.signature.params] == [("scale", "FP64", 1.0)]
    body = to_v2_metadata(spec, "lr", ["1"])
    assert [i["name"] for i in body["inputs"]] == ["a", "b"]
    assert body["outputs"][0]["name"] == "output-0"


def test_missing_pickle_in_a_real_model(sklearn_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sklearn_model, copy)
    spec = read_model_spec(copy)
    (copy / spec.flavors["sklearn"]["pickled_model"]).unlink()
    with pytest.raises(LayoutError, match="sklearn.pickled_model"):
        check_layout(copy, spec)


def _mlflow_reads(raw: dict):
    from mlflow.models import Model

    return Model.from_dict(raw)


@pytest.mark.parametrize("name", sorted(p.stem for p in MLMODELS.glob("*.yaml")))
def test_installed_mlflow_agrees_on_every_literal(name: str) -> None:
    spec = parse_mlmodel(mlmodel_text(name))
    raw = rewrite_for_mlflow(spec, INSTALLED) or spec.raw
    model = _mlflow_reads(raw)
    if spec.signature is None:
        assert model.signature is None
        return
    theirs = model.signature.inputs.inputs
    ours = spec.signature.inputs
    # Integer column names (a DataFrame's default columns) are V2 names, so strings, here.
    assert [f.name for f in ours] == [None if c.name is None else str(c.name) for c in theirs]
    if spec.signature.input_kind == "columns":
        # MLflow reads a composite column without "required" as required=None: compare truthiness.
        assert [f.required for f in ours] == [bool(c.required) for c in theirs]
    else:
        assert [f.shape for f in ours] == [tuple(c.shape) for c in theirs]
    their_params = model.signature.params.params if model.signature.params else []
    assert [p.name for p in spec.signature.params] == [p.name for p in their_params]
    # Datetime defaults stay ISO strings here (JSON for the metadata body); MLflow parses them.
    plain = [(p.name, p.default) for p in spec.signature.params if p.mlflow_type != "datetime"]
    assert plain == [(p.name, p.default) for p in their_params if p.name in dict(plain)]


def test_installed_mlflow_rejects_optional_until_rewritten() -> None:
    # The finding behind the 2.18 boundary, checked on the installed version.
    spec = parse_mlmodel(mlmodel_text("sklearn-2.5-optional"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'optional'"):
        _mlflow_reads(spec.raw)
    rewritten = rewrite_for_mlflow(spec, INSTALLED)
    assert rewritten is not None
    optional = [c.name for c in _mlflow_reads(rewritten).signature.inputs.inputs if not c.required]
    assert optional == ["city", "blob"]


def test_model_saved_by_24_to_29_loads_through_shadow_dir(sklearn_model: Path, tmp_path: Path) -> None:
    # Write the MLmodel as MLflow 2.4-2.9 did ("optional": true), then serve it without editing it.
    old = tmp_path / "old"
    shutil.copytree(sklearn_model, old)
    raw = yaml.safe_load((old / "MLmodel").read_text())
    columns = json.loads(raw["signature"]["inputs"])
    for column in columns:
        required = column.pop("required")
        if not required:
            column["optional"] = True
    raw["signature"]["inputs"] = json.dumps(columns)
    raw["mlflow_version"] = "2.9.2"
    (old / "MLmodel").write_text(yaml.safe_dump(raw))
    original = (old / "MLmodel").read_text()
    with pytest.raises(TypeError):
        mlflow.pyfunc.load_model(str(old))

    rewritten = rewrite_for_mlflow(read_model_spec(old), INSTALLED)
    assert rewritten is not None
    shadow = shadow_model_dir(old, rewritten, tmp_path / "shadows")
    model = mlflow.pyfunc.load_model(str(shadow))
    full = model.predict(pd.DataFrame({"a": [1.0], "b": [1.0]}))
    assert len(full) == 1
    assert (old / "MLmodel").read_text() == original


@pytest.fixture(scope="module")
def pytorch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    import mlflow.pytorch

    path = tmp_path_factory.mktemp("real") / "torch"
    mlflow.pytorch.save_model(
        torch.nn.Linear(4, 2), str(path), serialization_format="pickle", pip_requirements=[]
    )
    return path


def test_real_pytorch_layout_and_its_flattened_copy(pytorch_model: Path, tmp_path: Path) -> None:
    spec = read_model_spec(pytorch_model)
    assert spec.flavors["pytorch"]["model_data"] == "data"
    check_layout(pytorch_model, spec)

    flat = tmp_path / "flat"
    flat.mkdir()
    for file in pytorch_model.rglob("*"):
        if file.is_file():
            shutil.copy(file, flat / file.name)
    with pytest.raises(LayoutError) as info:
        check_layout(flat, read_model_spec(flat))
    assert "data/model.pth or data/model.pt2 (pytorch.model_data) is missing" in info.value.message
    assert "model.pth sits at the model root instead: the folder looks flattened" in info.value.message


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


def test_real_custom_pyfunc_with_code_and_artifacts(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    path = tmp_path / "custom"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=_Echo(),
        artifacts={"vocab": str(tmp_path / "vocab.txt")},
        code_paths=[str(tmp_path / "helper.py")],
        pip_requirements=[],
    )
    spec = read_model_spec(path)
    conf = spec.flavors["python_function"]
    assert conf["python_model"] and conf["code"] and conf["artifacts"]["vocab"]["path"]
    check_layout(path, spec)

    shutil.rmtree(path / conf["code"])
    (path / conf["artifacts"]["vocab"]["path"]).unlink()
    with pytest.raises(LayoutError) as info:
        check_layout(path, spec)
    assert f"{conf['code']} (python_function.code) is missing" in info.value.message
    assert "python_function artifact 'vocab'" in info.value.message
