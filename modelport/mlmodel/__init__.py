"""MLmodel files as data: parse them, normalise signatures, check layouts, bridge MLflow versions.

Pure functions over files; nothing here imports mlflow.
"""

from __future__ import annotations

from modelport.mlmodel.compat import rewrite_for_mlflow, shadow_model_dir
from modelport.mlmodel.layout import check_layout, missing_env_files, required_paths
from modelport.mlmodel.signature import parse_signature, to_v2_metadata
from modelport.mlmodel.spec import parse_mlmodel, read_model_spec, require_python_function
from modelport.mlmodel.types import FieldSpec, ModelSpec, ParamSpec, Signature

__all__ = [
    "FieldSpec",
    "ModelSpec",
    "ParamSpec",
    "Signature",
    "check_layout",
    "missing_env_files",
    "parse_mlmodel",
    "parse_signature",
    "read_model_spec",
    "require_python_function",
    "required_paths",
    "rewrite_for_mlflow",
    "shadow_model_dir",
    "to_v2_metadata",
]
