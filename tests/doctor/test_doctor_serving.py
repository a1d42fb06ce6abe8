"""Doctor against models saved by MLflow 2.9.2 in a uv venv, and the smoke check serving for real.

Slow: the saving venv, the isolated environments and the servers are real. The environments land in
the env tests' shared cache (``env_cache``), so they are built once per session.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from doctor_support import PYTHON, doctor, environ, isvc

pytestmark = pytest.mark.slow

VERSION_PROBE = '''\
"""A pyfunc whose prediction is the installed scikit-learn's minor version: drift shows in its output."""
import pandas as pd
import sklearn


class _Probe:
    def predict(self, model_input, params=None):
        minor = float(sklearn.__version__.split(".")[1])
        return pd.DataFrame({"minor": [minor] * len(model_input)})


def _load_pyfunc(data_path):
    return _Probe()
'''


def test_optional_signature_against_mlflow_3(model_29: tuple[Path, dict], tmp_path: Path) -> None:
    report = doctor(model_29[0], tmp_path, target_mlflow="3.17.2")
    sig = report.check("signature")
    assert sig.status == "warn"
    assert "saved by 2.9.2; read as written by MLflow >= 2.4 and < 2.18" in sig.message
    assert "TypeError: ColSpec.__init__() got an unexpected keyword argument 'optional'" in sig.message
    assert "modelport serves it anyway" in sig.message
    # The same model read by an MLflow of its own time: fine as written.
    assert doctor(model_29[0], tmp_path, target_mlflow="2.9.2").check("signature").status == "ok"


def test_kserve_mlserver_cannot_read_an_optional_signature(
    model_29: tuple[Path, dict], tmp_path: Path, write_yaml
) -> None:
    isvc_file = write_yaml("isvc.yaml", isvc(version="2", protocolVersion="v2"))
    report = doctor(model_29[0], tmp_path, kserve_files=(str(isvc_file),))
    kserve = report.check("kserve")
    assert kserve.status == "fail"
    assert kserve.details["selection"]["runtime"] == "kserve-mlserver"
    assert "TypeError: ColSpec.__init__() got an unexpected keyword argument 'optional'" in kserve.message
    assert report.exit_code == 1


def test_sklearn_drift_and_prediction_comparison(model_29: tuple[Path, dict], env_cache: Path) -> None:
    report = doctor(model_29[0], env_cache, smoke=True)
    env = report.check("environment")
    assert env.status == "warn"
    assert "scikit-learn 1.3.2 wanted, 1.9.1 installed" in env.message
    assert "`serve --env auto` builds an isolated environment" in env.message
    smoke = report.check("smoke")
    runs = smoke.details["runs"]
    assert runs["target"]["ready"] and runs["own"]["ready"], runs
    assert smoke.status == "ok", smoke.message
    assert "same predictions in an environment built from the model's own requirements" in smoke.message
    assert "scikit-learn 1.3.2 wanted" in smoke.message
    # model_29 has no input example: one row of the required columns (the optional one left out).
    assert smoke.details["input"] == "an input built from the signature"
    assert smoke.details["invocations_request"]["dataframe_split"]["columns"] == ["a", "b", "c"]
    assert runs["own"]["answers"]["/invocations"] == runs["target"]["answers"]["/invocations"]
    # With the target named explicitly, the drift itself is a failure.
    explicit = doctor(model_29[0], env_cache, target_python=PYTHON)
    assert explicit.check("environment").status == "fail"


def test_predictions_that_change_under_drift_fail(
    model_29: tuple[Path, dict], env_cache: Path, tmp_path: Path
) -> None:
    model = tmp_path / "probe"
    model.mkdir()
    # model_29's environment files: the same isolated environment (and cache entry) as model_29's.
    for name in ("python_env.yaml", "requirements.txt", "conda.yaml"):
        shutil.copy(model_29[0] / name, model / name)
    (model / "code").mkdir()
    (model / "code" / "version_probe.py").write_text(VERSION_PROBE)
    (model / "data").mkdir()
    (model / "input_example.json").write_text(json.dumps({"columns": ["a"], "data": [[1.0], [2.0]]}))
    (model / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: version_probe\n"
        "    code: code\n"
        "    data: data\n"
        "    env:\n"
        "      conda: conda.yaml\n"
        "      virtualenv: python_env.yaml\n"
        "    python_version: 3.11.7\n"
        "mlflow_version: 2.9.2\n"
        "saved_input_example_info:\n"
        "  artifact_path: input_example.json\n"
        "  pandas_orient: split\n"
        "  type: dataframe\n"
        "signature:\n"
        '  inputs: \'[{"type": "double", "name": "a"}]\'\n'
        '  outputs: \'[{"type": "double", "name": "minor"}]\'\n'
    )
    report = doctor(model, env_cache, smoke=True)
    smoke = report.check("smoke")
    assert smoke.status == "fail", smoke.message
    assert "the predictions differ" in smoke.message
    assert "scikit-learn 1.3.2 wanted, 1.9.1 installed" in smoke.message
    assert (
        smoke.details["predictions"]["target"]["invocations"]
        != smoke.details["predictions"]["own"]["invocations"]
    )
    assert report.exit_code == 1


def test_healthy_model_smoke(iris_model: Path, tmp_path: Path) -> None:
    report = doctor(iris_model, tmp_path, smoke=True)
    smoke = report.check("smoke")
    assert smoke.status == "ok", smoke.message
    assert "V2 infer and /invocations answered the saved input example" in smoke.message
    target = smoke.details["runs"]["target"]
    assert "own" not in smoke.details["runs"]
    assert target["answers"]["/v2/models/doctor/infer"]["outputs"]
    assert len(target["answers"]["/invocations"]["predictions"]) == len(
        smoke.details["invocations_request"]["dataframe_split"]["data"]
    )
    assert report.exit_code == 0


def test_smoke_without_input_example_uses_the_signature(
    torch_model: Path, copy_model, tmp_path: Path
) -> None:
    model = copy_model(torch_model)
    for name in ("input_example.json", "serving_input_example.json"):
        (model / name).unlink()
    text = (model / "MLmodel").read_text()
    start = text.index("saved_input_example_info:")
    end = text.index("\n", text.index("type:", start))
    (model / "MLmodel").write_text(text[:start] + text[end + 1 :])
    report = doctor(model, tmp_path, smoke=True, env=environ())
    smoke = report.check("smoke")
    assert smoke.status == "ok", smoke.message
    assert "an input built from the signature" in smoke.message
    assert smoke.details["v2_request"]["inputs"][0]["shape"] == [1, 4]


def test_build_instead_of_resolution(model_29: tuple[Path, dict], env_cache: Path) -> None:
    # model_29's environment is in the shared cache by now (or is built here, once).
    report = doctor(model_29[0], env_cache, build=True)
    env = report.check("environment")
    assert "resolution" not in env.details
    built = env.details["build"]
    assert built["bytes"] > 100e6 and Path(built["python"]).exists()
    assert "isolated environment built" in env.message
