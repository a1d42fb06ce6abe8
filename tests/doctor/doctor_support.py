"""Helpers for the doctor tests: run doctor in-process and look at its report."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from modelport.doctor import Options, Report, run_doctor
from modelport.settings import build_settings

ISVC = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
spec:
  predictor:
    model:
      modelFormat:
        name: mlflow
{extra}      storageUri: {uri}
"""


REPO = Path(__file__).resolve().parents[2]
# KServe's specifications beside the repository, where CI has them too.
KSERVE_SPECS = REPO.parent / "shared" / "specs" / "kserve"
ISVC_CRD = KSERVE_SPECS / "crds" / "serving.kserve.io_inferenceservices.yaml"


def isvc(uri: str = "s3://models/m", name: str = "m", version: str | None = None, **model: str) -> str:
    """An InferenceService for an mlflow model; ``model`` adds fields of spec.predictor.model."""
    text = ISVC.format(name=name, uri=uri, extra="".join(f"      {k}: {v}\n" for k, v in model.items()))
    if version is not None:
        text = text.replace("        name: mlflow\n", f'        name: mlflow\n        version: "{version}"\n')
    return text


def environ(**extra: str) -> dict[str, str]:
    uv_cache = Path(__file__).resolve().parents[2] / ".cache" / "uv"
    return {**os.environ, "UV_CACHE_DIR": str(uv_cache), "UV_PYTHON_DOWNLOADS": "never", **extra}


def doctor(model: str | Path, cache: Path, env: dict[str, str] | None = None, **options: object) -> Report:
    env = env or environ()
    settings = build_settings({"cache_dir": str(cache)}, env)
    options.setdefault("smoke", False)
    return run_doctor(Options(str(model), **options), settings, env)  # type: ignore[arg-type]


def statuses(report: Report) -> dict[str, str]:
    return {c.id: c.status for c in report.checks}


PYTHON = sys.executable
