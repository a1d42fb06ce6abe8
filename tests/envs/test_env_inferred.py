"""Models as people have them: no environment files (inferred from MLmodel), mlflow-skinny only,
and requirements that leave numpy free, resolved as of the model's creation."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from envs_support import make_settings, uv_environ

from modelport.envs import resolve_interpreter
from modelport.envs.build import exclude_newer
from modelport.envs.commands import diff_command
from modelport.envs.inferred import created_at, infer_requirements
from modelport.envs.requirements import read_model_env
from modelport.errors import ModelportError
from modelport.mlmodel import parse_mlmodel
from modelport.settings import build_settings
from tests.conftest import start_server
from tests.runtime.mlflow1_support import COLUMNS, MLFLOW1, PROBE

# A date of the model's era: after mlflow-skinny 1.30.1 was uploaded (2023-04-05), before numpy 2.
ERA = "2023-05-10 12:00:00.000000"


def _mlmodel(flavors: str, extra: str = "") -> str:
    return f"flavors:\n{flavors}mlflow_version: 2.3.2\n{extra}"


def test_infers_each_flavors_recorded_version() -> None:
    spec = parse_mlmodel(
        "flavors:\n"
        "  python_function: {loader_module: mlflow.xgboost, python_version: 3.10.12, data: model.xgb}\n"
        "  xgboost: {xgb_version: 1.7.6, data: model.xgb, model_class: xgboost.sklearn.XGBClassifier}\n"
        "mlflow_version: 2.3.2\n"
    )
    assert infer_requirements(spec) == ["xgboost==1.7.6"]
    cases = {
        "sklearn: {sklearn_version: 1.2.2}": ["scikit-learn==1.2.2"],
        "lightgbm: {lgb_version: 3.3.5}": ["lightgbm==3.3.5"],
        "pytorch: {pytorch_version: 2.0.1+cu118}": ["torch==2.0.1"],  # a local build: PyPI's release
        "keras: {keras_version: 2.12.0, keras_module: tensorflow.keras}": ["keras==2.12.0", "tensorflow"],
        "onnx: {onnx_version: 1.14.0}": ["onnx==1.14.0", "onnxruntime"],
        "transformers: {transformers_version: 4.30.2, framework: pt}": ["transformers==4.30.2", "torch"],
        "sktime: {sktime_version: 0.24.0}": ["sktime==0.24.0"],
        "statsmodels: {statsmodels_version: not-a-version}": ["statsmodels"],
        "spark: {pyspark_version: 3.4.1}": ["pyspark==3.4.1"],
    }
    for flavor, want in cases.items():
        assert infer_requirements(parse_mlmodel(f"flavors:\n  {flavor}\n")) == want, flavor


def test_custom_pyfunc_gets_its_cloudpickle() -> None:
    spec = parse_mlmodel("flavors:\n  python_function: {cloudpickle_version: 2.2.1, python_model: m.pkl}\n")
    assert infer_requirements(spec) == ["cloudpickle==2.2.1"]


@pytest.mark.parametrize(
    ("written", "want"),
    [
        ("'2023-05-10 12:00:00.123456'", "2023-05-10T12:00:00Z"),
        ("2023-05-10 12:00:00", "2023-05-10T12:00:00Z"),  # YAML reads it as a timestamp
        ("'2023-05-10T14:00:00+02:00'", "2023-05-10T12:00:00Z"),
        ("'yesterday'", None),
        ("'1970-01-01 00:00:00'", None),
    ],
)
def test_creation_time_for_exclude_newer(written: str, want: str | None) -> None:
    spec = parse_mlmodel(f"flavors:\n  sklearn: {{}}\nutc_time_created: {written}\n")
    assert created_at(spec) == want


def test_model_env_without_files_is_inferred(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n"
        "  python_function: {loader_module: mlflow.sklearn, model_path: model.pkl, python_version: 3.9.7}\n"
        "  sklearn: {pickled_model: model.pkl, sklearn_version: 1.0.2, serialization_format: cloudpickle}\n"
        "mlflow_version: 1.27.0\nutc_time_created: '2022-08-01 10:00:00.000000'\n"
    )
    (tmp_path / "model.pkl").write_bytes(b"x")
    model = read_model_env(tmp_path)
    assert model.inferred == ("scikit-learn==1.0.2",)
    assert [str(r) for r in model.requirements] == ["scikit-learn==1.0.2"]
    assert "mlflow==1.27.0" in model.added and model.python_version == "3.9.7"
    # MLflow 1.x imports pkg_resources: setuptools comes with it, below 82.
    assert "setuptools<82" in model.build_requirements
    assert model.created == "2022-08-01T10:00:00Z"
    settings = make_settings(tmp_path / "cache", "uv")
    assert exclude_newer(model, settings.env) == "2022-08-01T10:00:00Z"
    assert exclude_newer(model, make_settings(tmp_path / "c", "uv", resolve_as_of="now").env) is None
    operator = make_settings(tmp_path / "c", "uv", environ=uv_environ(UV_EXCLUDE_NEWER="2024-01-01"))
    assert exclude_newer(model, operator.env) is None  # the operator's own date wins
    out = io.StringIO()
    diff_command(str(tmp_path), settings, None, False, out)
    assert (
        "requirements inferred from MLmodel (the model carries no environment files): scikit-learn==1.0.2"
        in (out.getvalue())
    )


def test_resolve_as_of_setting() -> None:
    assert build_settings({}, {}).env.resolve_as_of == "created"
    assert build_settings({}, {"MODELPORT_RESOLVE_AS_OF": "now"}).env.resolve_as_of == "now"
    assert build_settings(
        {"resolve_as_of": "created"}, {"MODELPORT_RESOLVE_AS_OF": "now"}
    ).env.resolve_as_of == ("created")
    with pytest.raises(ModelportError, match="expected created or now"):
        build_settings({}, {"MODELPORT_RESOLVE_AS_OF": "tomorrow"})


def _era_copy(model: Path, dest: Path, requirements: list[str], created: str = ERA) -> Path:
    """The 1.x model as AzureML writes it: mlflow-skinny, numpy left free, saved in `created`'s day."""
    shutil.copytree(model, dest)
    (dest / "conda.yaml").unlink()
    (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
    mlmodel = yaml.safe_load((dest / "MLmodel").read_text())
    mlmodel["flavors"]["python_function"]["env"] = {"virtualenv": "python_env.yaml"}
    mlmodel["utc_time_created"] = created
    (dest / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return dest


ERA_REQUIREMENTS = [f"mlflow-skinny=={MLFLOW1}", "cloudpickle==2.2.1", "scikit-learn==1.1.3", "pandas"]


def _v2(base: str, name: str) -> httpx.Response:
    inputs = [
        {"name": n, "datatype": "FP64", "shape": [len(PROBE)], "data": [row[i] for row in PROBE]}
        for i, n in enumerate(COLUMNS)
    ]
    return httpx.post(f"{base}/v2/models/{name}/infer", json={"inputs": inputs}, timeout=60)


def _exit_log(server: object, timeout: float = 300) -> str:
    proc = server.proc  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is not None, "the server should have given up on the model"
    return server.log()  # type: ignore[attr-defined]


@pytest.mark.slow
def test_numpy_left_free_fails_today_and_serves_as_of_creation(
    model_1x: tuple[Path, list[int]], tmp_path: Path
) -> None:
    model = _era_copy(model_1x[0], tmp_path / "era", ERA_REQUIREMENTS)
    env = uv_environ()
    # Today's index: numpy 2 under scikit-learn 1.1.3's extensions, built for numpy 1.
    failing = start_server(
        model, "--env", "uv", "--resolve-as-of", "now", tmp=tmp_path / "now", env=env, expect_ready=False
    )
    try:
        log = _exit_log(failing)
    finally:
        failing.stop()
    assert "numpy.dtype size changed" in log
    server = start_server(model, "--env", "uv", tmp=tmp_path / "created", env=env, timeout=300)
    try:
        resp = _v2(server.base, "era")
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["data"] == model_1x[1]
        log = server.log()
    finally:
        server.stop()
    assert "resolved as of 2023-05-10T12:00:00Z" in log
    # mlflow-skinny only: the worker found MLflow without an `mlflow` distribution.
    assert f"mlflow {MLFLOW1}" in log
    python = next((tmp_path / "created" / "cache" / "envs").glob("uv-*/bin/python"))
    names = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(sorted(d.metadata['Name'].lower() for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'mlflow-skinny'" in names and "'mlflow'" not in names
    assert "'numpy'" in names


@pytest.mark.slow
def test_pins_newer_than_creation_fall_back_to_today(
    model_1x: tuple[Path, list[int]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Created before mlflow-skinny 1.30.1 was uploaded: as of that day the pin has no solution.
    model = _era_copy(
        model_1x[0], tmp_path / "early", [*ERA_REQUIREMENTS, "numpy<2"], created="2023-04-01 00:00:00.000000"
    )
    caplog.set_level("WARNING", logger="modelport.envs")
    interp = resolve_interpreter(model, make_settings(tmp_path / "cache", "uv"))
    assert Path(interp.python).is_file()
    assert any("resolving with today's index" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_model_without_environment_files_served_under_uv(
    model_1x: tuple[Path, list[int]], tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("MLmodel", "model.pkl"):
        shutil.copy2(model_1x[0] / name, bare / name)
    server = start_server(bare, "--env", "uv", tmp=tmp_path / "run", env=uv_environ(), timeout=300)
    try:
        resp = _v2(server.base, "bare")
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["data"] == model_1x[1]
        log = server.log()
    finally:
        server.stop()
    assert "environment inferred from MLmodel (scikit-learn==1.1.3)" in log
