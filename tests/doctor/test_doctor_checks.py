"""The checks on real models, broken the ways the incidents broke them (no server started here)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from doctor_support import ISVC_CRD, PYTHON, doctor, environ, isvc, statuses

from modelport.cli import run
from modelport.doctor import Options
from modelport.doctor.commands import doctor_command
from modelport.settings import build_settings


def test_healthy_model_is_ok_and_exits_0(iris_model: Path, tmp_path: Path) -> None:
    report = doctor(iris_model, tmp_path)
    assert statuses(report) == {
        "fetch": "ok",
        "mlmodel": "ok",
        "layout": "ok",
        "signature": "ok",
        "environment": "ok",
        "smoke": "skip",
    }
    assert report.exit_code == 0
    assert "MLflow >= 3.9" in report.check("signature").message  # skops
    assert "no drift" in report.check("environment").message
    assert report.check("environment").details["resolution"]["packages"] > 10


def test_flattened_pytorch_copy_names_the_file_that_moved(
    torch_model: Path, copy_model, tmp_path: Path
) -> None:
    model = copy_model(torch_model)
    for path in (model / "data").iterdir():  # MLflow 3 writes data/model.pt2, 2.x data/model.pth
        shutil.move(path, model / path.name)
    (model / "data").rmdir()
    report = doctor(model, tmp_path / "cache", smoke=True)
    layout = report.check("layout")
    assert layout.status == "fail"
    assert "data/model.pth or data/model.pt2" in layout.message
    assert "model.pt2 sits at the model root instead" in layout.message
    assert "flattened" in layout.message
    assert "subfolders intact" in layout.fix
    assert report.check("smoke").status == "skip"
    assert report.exit_code == 1


def test_missing_python_model_pkl(custom_model: Path, copy_model, tmp_path: Path) -> None:
    model = copy_model(custom_model)
    (model / "python_model.pkl").unlink()
    report = doctor(model, tmp_path / "cache")
    layout = report.check("layout")
    assert layout.status == "fail"
    assert "python_model.pkl (python_function.python_model) is missing" in layout.message
    assert report.exit_code == 1


def test_required_signature_against_mlflow_29(custom_model: Path, tmp_path: Path) -> None:
    report = doctor(custom_model, tmp_path, target_mlflow="2.9.2")
    sig = report.check("signature")
    assert sig.status == "warn"
    assert "read as written by MLflow >= 2.10" in sig.message
    assert "TypeError: __init__() got an unexpected keyword argument 'required'" in sig.message
    assert "modelport serves it anyway" in sig.message
    assert sig.details["modelport"] == "rewrite"
    assert report.exit_code == 0


def test_skops_model_against_mlflow_29_cannot_be_translated(iris_model: Path, tmp_path: Path) -> None:
    report = doctor(iris_model, tmp_path, target_mlflow="2.9.2")
    sig = report.check("signature")
    assert sig.status == "fail"
    assert "cannot translate" in sig.message and "skops" in sig.message
    assert report.exit_code == 1


def test_kserve_mlserver_selected_for_a_model_mlserver_cannot_read(
    iris_model: Path, tmp_path: Path, write_yaml
) -> None:
    isvc_file = write_yaml("isvc.yaml", isvc(version="2", protocolVersion="v2"))
    report = doctor(iris_model, tmp_path, kserve_files=(str(isvc_file),))
    kserve = report.check("kserve")
    assert kserve.status == "fail"
    assert kserve.details["selection"]["runtime"] == "kserve-mlserver"
    assert "priority 1" in kserve.message
    assert "MLServer 1.7.1, mlflow 2.19.0" in kserve.message
    assert "Unrecognized serialization format: skops" in kserve.message
    assert "modelport-mlflow" in kserve.fix
    assert report.check("signature").status == "fail"
    assert "kserve-mlserver" in report.check("signature").message


def test_kserve_modelport_runtime_ok(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    text = isvc(uri="s3://models/iris", runtime="modelport-mlflow", protocolVersion="v2")
    text = text.replace("    model:\n", "    storageContainerName: modelport\n    model:\n")
    report = doctor(iris_model, tmp_path, kserve_files=(str(write_yaml("isvc.yaml", text)),))
    kserve = report.check("kserve")
    assert kserve.status == "ok", kserve.message
    assert kserve.details["selection"]["runtime"] == "modelport-mlflow"
    assert kserve.details["storage"]["container"] == "modelport"
    assert kserve.details["resources"]["requests"]["ephemeral-storage"] == "1Gi"


def test_unsupported_storage_uri(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    text = isvc(uri="ftp://host/models/iris", runtime="modelport-mlflow")
    report = doctor(iris_model, tmp_path, kserve_files=(str(write_yaml("isvc.yaml", text)),))
    kserve = report.check("kserve")
    assert kserve.status == "fail"
    assert "StorageUri [ftp://host/models/iris] is not supported" in kserve.message
    assert kserve.details["storage"]["container"] is None


def test_custom_storage_container_regex(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    container = """\
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterStorageContainer
metadata:
  name: ftp-fetcher
spec:
  container:
    name: storage-initializer
    image: example/ftp:1
  supportedUriFormats:
    - regex: "^ftp://[^/]+/.+"
"""
    files = (
        str(write_yaml("isvc.yaml", isvc(uri="ftp://host/models/iris"))),
        str(write_yaml("sc.yaml", container)),
    )
    report = doctor(iris_model, tmp_path, kserve_files=files)
    assert report.check("kserve").details["storage"]["container"] == "ftp-fetcher"


MULTI_MODEL_ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: mlflow-models
spec:
  predictor:
    model:
      modelFormat:
        name: mlflow
      runtime: {runtime}
      protocolVersion: v2
"""


def trained_model(name: str, uri: str, memory: str, isvc_name: str = "mlflow-models") -> str:
    return f"""\
---
apiVersion: serving.kserve.io/v1alpha1
kind: TrainedModel
metadata:
  name: {name}
spec:
  inferenceService: {isvc_name}
  model:
    framework: mlflow
    storageUri: {uri}
    memory: {memory}
"""


def multi_model_report(
    iris_model: Path,
    tmp_path: Path,
    write_yaml,
    *docs: str,
    runtime: str = "modelport-mlflow-multimodel",
    memory_limit: str | None = None,
):
    """doctor's kserve check of the multi-model InferenceService, with ``docs`` in the same file."""
    text = MULTI_MODEL_ISVC.format(runtime=runtime)
    if memory_limit is not None:
        text += f"      resources:\n        limits:\n          memory: {memory_limit}\n"
    report = doctor(iris_model, tmp_path, kserve_files=(str(write_yaml("isvc.yaml", text + "".join(docs))),))
    return report.check("kserve")


def test_multi_model_isvc_with_its_trained_models(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    kserve = multi_model_report(
        iris_model,
        tmp_path,
        write_yaml,
        trained_model("iris", "s3://models/iris", "512Mi"),
        trained_model("wine", "gs://models/wine", "512Mi"),
        trained_model("other", "models:/other/1", "8Gi", isvc_name="someone-else"),
    )
    assert kserve.status == "ok", kserve.message
    assert kserve.details["selection"]["runtime"] == "modelport-mlflow-multimodel"
    assert "multi-model (modelport-mlflow-multimodel)" in kserve.message
    assert [t["name"] for t in kserve.details["multi_model"]["trained_models"]] == ["iris", "wine"]
    assert kserve.details["multi_model"]["memory_total"] == 2 * 512 * 2**20
    # No TrainedModel given: the server starts empty, which is what the runtime is for.
    kserve = multi_model_report(iris_model, tmp_path, write_yaml)
    assert kserve.status == "ok", kserve.message
    assert "none given to --kserve" in kserve.message


def test_trained_model_uri_the_agent_cannot_fetch(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    kserve = multi_model_report(
        iris_model, tmp_path, write_yaml, trained_model("iris", "models:/iris/1", "512Mi")
    )
    assert kserve.status == "fail"
    assert "its agent downloads only s3://, gs://, https://, http://, not models:/iris/1" in kserve.message
    assert "modelport-mlflow" in kserve.fix


def test_trained_models_over_the_memory_limit(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    docs = [trained_model(n, f"s3://models/{n}", "1.5Gi") for n in ("a", "b")]
    kserve = multi_model_report(iris_model, tmp_path, write_yaml, *docs)
    assert kserve.status == "fail"
    assert "over the InferenceService's memory limit 2Gi" in kserve.message  # KServe's default limit
    assert "resources.limits.memory" in kserve.fix
    kserve = multi_model_report(iris_model, tmp_path, write_yaml, *docs, memory_limit="4Gi")
    assert kserve.status == "ok", kserve.message


def test_trained_model_name_and_memory_as_kserve_checks(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    kserve = multi_model_report(
        iris_model, tmp_path, write_yaml, trained_model("iris.v2", "s3://models/iris", "lots")
    )
    assert kserve.status == "fail"
    assert "KServe refuses TrainedModel 'iris.v2'" in kserve.message
    assert "no valid spec.model.memory" in kserve.message


def test_no_storage_uri_with_a_single_model_runtime(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    kserve = multi_model_report(iris_model, tmp_path, write_yaml, runtime="modelport-mlflow")
    assert kserve.status == "warn"
    assert "modelport-mlflow is a single-model runtime" in kserve.message
    assert "modelport-mlflow-multimodel" in kserve.fix


def test_model_too_big_for_the_pod(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    text = isvc(runtime="modelport-mlflow", resources="{limits: {memory: 100Mi}}")
    report = doctor(iris_model, tmp_path, kserve_files=(str(write_yaml("isvc.yaml", text)),))
    kserve = report.check("kserve")
    assert kserve.status == "fail"
    assert "raise the memory limit" in kserve.fix


def test_isvc_validated_against_the_crd(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    text = isvc(runtime="modelport-mlflow").replace("      storageUri:", "      storageUrl:")
    files = (str(write_yaml("isvc.yaml", text)), str(ISVC_CRD))
    report = doctor(iris_model, tmp_path, kserve_files=files)
    kserve = report.check("kserve")
    assert kserve.status == "fail"
    assert "spec.predictor.model.storageUrl: unknown field" in kserve.message
    assert kserve.details["schema"]["against"] == "the CRD given"
    # The same file is valid for doctor's own schema, which reads only what doctor needs.
    report = doctor(iris_model, tmp_path, kserve_files=(files[0],))
    assert "storageUrl" not in report.check("kserve").message


def test_own_schema_catches_what_doctor_reads(iris_model: Path, tmp_path: Path, write_yaml) -> None:
    text = isvc(runtime="modelport-mlflow").replace("        name: mlflow\n", "        version: '2'\n")
    report = doctor(iris_model, tmp_path, kserve_files=(str(write_yaml("isvc.yaml", text)),))
    assert (
        "spec.predictor.model.modelFormat: required field 'name' is missing" in report.check("kserve").message
    )


def test_unreadable_uri_exits_2(tmp_path: Path) -> None:
    report = doctor(tmp_path / "nowhere", tmp_path / "cache")
    assert report.check("fetch").status == "fail"
    assert "does not exist" in report.check("fetch").message
    assert {c.status for c in report.checks[1:]} == {"skip"}
    assert report.exit_code == 2


def test_bad_arguments_exit_2(iris_model: Path, tmp_path: Path, capsys) -> None:
    args = ["doctor", str(iris_model), "--no-smoke", "--cache-dir", str(tmp_path)]
    assert run([*args, "--kserve", str(tmp_path / "missing.yaml")], environ()) == 2
    assert "--kserve" in capsys.readouterr().err
    assert run([*args, "--target-mlflow", "not-a-version"], environ()) == 2
    assert run([*args, "--target-python", "/no/such/python"], environ()) == 2


def test_json_output(iris_model: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    settings = build_settings({"cache_dir": str(tmp_path)}, environ())
    code = doctor_command(Options(str(iris_model), smoke=False), settings, environ(), as_json=True, out=out)
    body = json.loads(out.getvalue())
    assert code == 0
    assert body["model"] == str(iris_model) and body["status"] == "ok"
    assert [c["id"] for c in body["checks"]] == [
        "fetch",
        "mlmodel",
        "layout",
        "signature",
        "environment",
        "smoke",
    ]
    assert set(body["checks"][0]) == {"id", "status", "message", "details"}


def test_table_output(iris_model: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    settings = build_settings({"cache_dir": str(tmp_path)}, environ())
    doctor_command(Options(str(iris_model), smoke=False), settings, environ(), out=out)
    text = out.getvalue()
    for word in ("check", "fetch", "signature", "environment", "ok: ready to deploy"):
        assert word in text


def test_explicit_target_with_drift_fails(custom_model: Path, tmp_path: Path) -> None:
    # The greeter pins nothing but mlflow and pandas: the target satisfies it.
    report = doctor(custom_model, tmp_path, target_python=PYTHON)
    assert report.check("environment").status == "ok"


def test_fast_checks_take_under_a_second(iris_model: Path, tmp_path: Path) -> None:
    report = doctor(iris_model, tmp_path)
    env = report.check("environment")
    fast = sum(c.seconds for c in report.checks) - env.details["resolution"]["wait_seconds"]
    # Under a second on an idle machine (README); the bound leaves room for a loaded CI runner.
    assert fast < 2.0, [(c.id, c.seconds) for c in report.checks]


def test_command_line(iris_model: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "modelport", "doctor", str(iris_model), "--no-smoke", "--json"]
    proc = subprocess.run(
        [*cmd, "--cache-dir", str(tmp_path), "--target-mlflow", "2.9.2"],
        capture_output=True,
        text=True,
        env=environ(),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr  # skops cannot be read by 2.9.2, nor translated
    body = json.loads(proc.stdout)
    assert body["status"] == "fail"
    assert next(c for c in body["checks"] if c["id"] == "signature")["status"] == "fail"
