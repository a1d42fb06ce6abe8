"""Make an MLmodel written by one MLflow version readable by another, without touching the user's files.

The rewritten MLmodel goes into a shadow folder of symlinks to the original entries.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from modelport.errors import ModelLoadError
from modelport.mlmodel.spec import MLMODEL
from modelport.mlmodel.types import ModelSpec

# Version boundaries, read from mlflow/types/schema.py of each release:
#   2.4   ColSpec gains "optional" (written only when true)
#   2.6   params, keyed "dtype";  2.7 writes "type" and reads both
#   2.10  "required" replaces "optional" (both read until 2.17); array and object types
#   2.12  map;  2.16 sparkml_vector;  2.19 any;  2.20 object-typed params
#   2.18  "optional" is rejected: ColSpec.__init__() got an unexpected keyword argument 'optional'
OPTIONAL_SINCE = (2, 4)
PARAMS_SINCE = (2, 6)
PARAMS_TYPE_KEY_SINCE = (2, 7)
REQUIRED_SINCE = (2, 10)
OPTIONAL_DROPPED = (2, 18)
TYPE_SINCE: dict[str, tuple[int, int]] = {
    "array": (2, 10),
    "object": (2, 10),
    "map": (2, 12),
    "sparkml_vector": (2, 16),
    "any": (2, 19),
}
OBJECT_PARAMS_SINCE = (2, 20)
# Flavors' serialization_format "skops" (sklearn, lightgbm): absent in 3.8.0, present in 3.9.0.
SKOPS_SINCE = (3, 9)


def rewrite_for_mlflow(spec: ModelSpec, installed_mlflow: str) -> dict[str, Any] | None:
    """The MLmodel dict that `installed_mlflow` can read, or None when the original will do.

    Raises ModelLoadError when the signature uses a type the installed MLflow does not know.
    """
    version = _release(installed_mlflow)
    saved_by = spec.mlflow_version or "an unknown MLflow version"
    _check_flavors(spec, version, installed_mlflow, saved_by)
    signature = spec.raw.get("signature")
    if not isinstance(signature, dict):
        return None
    new_signature = dict(signature)
    for key in ("inputs", "outputs"):
        items = _json_list(signature.get(key))
        if items is None:
            continue
        _check_types(items, version, installed_mlflow, saved_by, key)
        changed = [_rewrite_column(item, version) for item in items]
        if changed != items:
            new_signature[key] = json.dumps(changed)
    params = _json_list(signature.get("params"))
    if params and version >= PARAMS_SINCE:
        _check_param_types(params, version, installed_mlflow, saved_by)
        changed = [_rewrite_param(p, version) for p in params]
        if changed != params:
            new_signature["params"] = json.dumps(changed)
    if new_signature == signature:
        return None
    raw = copy.deepcopy(spec.raw)
    raw["signature"] = new_signature
    return raw


def _release(version: str) -> tuple[int, ...]:
    # The release tuple only: 2.10.0rc0 already reads "required".
    try:
        return Version(version).release
    except InvalidVersion as exc:
        raise ModelLoadError(f"cannot parse the installed MLflow version {version!r}") from exc


def _json_list(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None  # parse_signature already reports bad JSON
    if isinstance(value, list) and all(isinstance(x, dict) for x in value):
        return value
    return None


def _rewrite_column(item: dict[str, Any], version: tuple[int, ...]) -> dict[str, Any]:
    if item.get("type") == "tensor" or ("optional" not in item and "required" not in item):
        return item
    out = dict(item)
    optional = _flag(out.pop("optional", None))
    required = _flag(out.pop("required", None))
    is_required = required if required is not None else (not optional if optional is not None else True)
    if version >= REQUIRED_SINCE:
        # 2.10-2.17 still read "optional" but warn; 2.18+ reject it, so write "required" only.
        if not is_required:
            out["required"] = False
        elif required is not None:
            out["required"] = True
    elif version >= OPTIONAL_SINCE:
        if not is_required:
            out["optional"] = True
    # Before 2.4 a column cannot be optional: it becomes required, the only thing that MLflow reads.
    return out


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _rewrite_param(item: dict[str, Any], version: tuple[int, ...]) -> dict[str, Any]:
    if version >= PARAMS_TYPE_KEY_SINCE or "type" not in item:
        return item
    out = dict(item)
    out["dtype"] = out.pop("type")
    return out


def _check_types(
    items: list[dict[str, Any]], version: tuple[int, ...], installed: str, saved_by: str, key: str
) -> None:
    for name in sorted(set().union(*(_types_in(item) for item in items))):
        needed = TYPE_SINCE.get(name)
        if needed and version < needed:
            raise ModelLoadError(
                f"the model's signature {key} use the MLflow type '{name}', which MLflow {installed} "
                f"cannot read: MLflow >= {needed[0]}.{needed[1]} is needed (the model was saved "
                f"with {saved_by})",
                mlflow_type=name,
                needed=f"{needed[0]}.{needed[1]}",
            )


def _check_flavors(spec: ModelSpec, version: tuple[int, ...], installed: str, saved_by: str) -> None:
    for flavor, conf in spec.flavors.items():
        if conf.get("serialization_format") == "skops" and version < SKOPS_SINCE:
            raise ModelLoadError(
                f"the model's {flavor} flavor was saved in the skops format, which MLflow {installed} "
                f"cannot load: MLflow >= 3.9 is needed (the model was saved with {saved_by})",
                needed="3.9",
            )


def _check_param_types(
    params: list[dict[str, Any]], version: tuple[int, ...], installed: str, saved_by: str
) -> None:
    for p in params:
        if (p.get("type") or p.get("dtype")) == "object" and version < OBJECT_PARAMS_SINCE:
            raise ModelLoadError(
                f"the model's param '{p.get('name')}' has the MLflow type 'object', which MLflow "
                f"{installed} cannot read: MLflow >= 2.20 is needed (the model was saved with {saved_by})",
                mlflow_type="object",
                needed="2.20",
            )


def _types_in(spec: Any) -> set[str]:
    """Every MLflow type named in a column spec, nested ones (array items, object properties) too."""
    found: set[str] = set()
    if isinstance(spec, dict):
        if isinstance(spec.get("type"), str):
            found.add(spec["type"])
        for key in ("items", "values"):
            found |= _types_in(spec.get(key))
        props = spec.get("properties")
        if isinstance(props, dict):
            for prop in props.values():
                found |= _types_in(prop)
    return found


def mlmodel_text(mlmodel: dict[str, Any]) -> str:
    """YAML as MLflow writes it (block style, sorted keys)."""
    return yaml.safe_dump(mlmodel, default_flow_style=False)


def shadow_model_dir(model_dir: Path, new_mlmodel: dict[str, Any], dest_root: Path) -> Path:
    """A folder of symlinks to model_dir's entries plus the rewritten MLmodel, made once and reused.

    Named by a hash of the original folder's path, its entry names and the new MLmodel text,
    built in a temporary folder and renamed into place so a reader never sees it half-made.
    """
    source = Path(model_dir).resolve()
    text = mlmodel_text(new_mlmodel)
    try:
        entries = sorted(p.name for p in source.iterdir() if p.name != MLMODEL)
    except OSError as exc:
        raise ModelLoadError(f"cannot list model folder {source}: {exc}") from exc
    digest = hashlib.sha256("\0".join([str(source), *entries, text]).encode()).hexdigest()[:32]
    dest_root = Path(dest_root)
    final = dest_root / digest
    if (final / MLMODEL).is_file():
        return final
    tmp: str | None = None
    try:
        dest_root.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{digest}.", dir=dest_root)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide it from workers running as another user
        for name in entries:
            os.symlink(source / name, Path(tmp, name), target_is_directory=(source / name).is_dir())
        Path(tmp, MLMODEL).write_text(text, encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process won the race; its folder is identical by construction.
            if not (final / MLMODEL).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
    except OSError as exc:
        raise ModelLoadError(
            f"cannot build the compatibility folder for {source} in {dest_root}: {exc}"
        ) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
