"""Read an MLmodel file (MLflow 1.x to 3.x) into a ModelSpec.

Unknown keys are kept in `raw` and otherwise ignored, so newer MLflow versions still parse.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from modelport.errors import ModelLoadError
from modelport.mlmodel import lfs
from modelport.mlmodel.signature import parse_signature
from modelport.mlmodel.types import ModelSpec

MLMODEL = "MLmodel"
REQUIREMENTS = "requirements.txt"
_LISTING_LIMIT = 20


def parse_mlmodel(text: str, path: str = "") -> ModelSpec:
    """Parse the text of an MLmodel file; `path` only names it in errors and in the spec."""
    where = f" at {path}" if path else ""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"MLmodel{where} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(
            f"MLmodel{where} should be a YAML mapping with a 'flavors' key, found {type(raw).__name__}"
        )
    flavors = raw.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise ModelLoadError(f"MLmodel{where} names no flavors: is this an MLflow model folder?")
    flavors = {str(k): (v if isinstance(v, dict) else {}) for k, v in flavors.items()}
    pyfunc = flavors.get("python_function", {})
    example = raw.get("saved_input_example_info")
    metadata = raw.get("metadata")
    try:
        signature = parse_signature(raw.get("signature"))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc.message}{where}") from exc
    return ModelSpec(
        path=path,
        flavors=flavors,
        signature=signature,
        mlflow_version=_str(raw.get("mlflow_version")),
        loader_module=_str(pyfunc.get("loader_module")),
        python_version=_str(pyfunc.get("python_version")),
        run_id=_str(raw.get("run_id")),
        model_uuid=_str(raw.get("model_uuid")),
        model_id=_str(raw.get("model_id")),
        input_example_path=_str(example.get("artifact_path")) if isinstance(example, dict) else None,
        env_files=_env_files(pyfunc.get("env")),
        metadata=metadata if isinstance(metadata, dict) else {},
        raw=raw,
    )


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _env_files(env: Any) -> dict[str, str]:
    # MLflow < 1.26 wrote `env: conda.yaml`; later `env: {conda: ..., virtualenv: ...}`.
    if isinstance(env, str) and env:
        return {"conda": env}
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items() if isinstance(v, str) and v}
    return {}


def read_model_spec(model_dir: Path) -> ModelSpec:
    """Read `model_dir/MLmodel`; the error names the folder and what it holds instead."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        what = "is a file" if model_dir.exists() else "does not exist"
        raise ModelLoadError(f"model folder {model_dir} {what}", path=str(model_dir))
    mlmodel = model_dir / MLMODEL
    if not mlmodel.is_file():
        raise ModelLoadError(_missing_mlmodel_message(model_dir), path=str(model_dir))
    size = lfs.pointer_size(mlmodel)
    if size is not None:
        raise ModelLoadError(f"{lfs.describe_pointer(str(mlmodel), size)}; {lfs.HINT}", path=str(model_dir))
    try:
        text = mlmodel.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read {mlmodel}: {exc}", path=str(model_dir)) from exc
    spec = parse_mlmodel(text, path=str(model_dir))
    if (model_dir / REQUIREMENTS).is_file() and "requirements" not in spec.env_files:
        spec = replace(spec, env_files={**spec.env_files, "requirements": REQUIREMENTS})
    return spec


def require_python_function(spec: ModelSpec) -> None:
    """Refuse, before anything starts, a model MLflow's pyfunc loader cannot load (an R crate, a
    flavor-only MLmodel): every protocol modelport serves goes through mlflow.pyfunc."""
    if "python_function" in spec.flavors:
        return
    where = f" ({spec.path})" if spec.path else ""
    raise ModelLoadError(
        f"the model{where} has no python_function flavor, so MLflow's pyfunc loader cannot load it; "
        f"its flavors: {', '.join(spec.flavors)}. Save it with a flavor that writes python_function "
        "(mlflow.<flavor>.save_model does), or serve it with its own flavor's server",
        path=spec.path,
        flavors=list(spec.flavors),
    )


def list_entries(folder: Path, limit: int = _LISTING_LIMIT) -> str:
    """A short, sorted listing of a folder for error messages ("a, b/, c ... and 3 more")."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty)"
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _missing_mlmodel_message(model_dir: Path) -> str:
    message = f"no MLmodel file in {model_dir}; it holds: {list_entries(model_dir)}"
    nested = sorted(p.parent for p in model_dir.glob("*/MLmodel")) + sorted(
        p.parent for p in model_dir.glob("*/*/MLmodel")
    )
    if nested:
        rel = nested[0].relative_to(model_dir).as_posix()
        message += f". An MLmodel sits in {rel}/: point the model URI at that folder"
    elif any(p.name.lower() == "mlmodel" for p in model_dir.iterdir()):
        message += ". The file must be named exactly 'MLmodel'"
    return message
