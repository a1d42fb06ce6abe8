"""Check that every file an MLmodel's flavors name exists in the model folder.

Missing files are reported with what the folder holds instead, and flattened or nested copies are named.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from modelport.errors import LayoutError
from modelport.mlmodel import lfs
from modelport.mlmodel.spec import list_entries
from modelport.mlmodel.types import ModelSpec

# Flavor keys whose value is a path relative to the model root, and what must sit there.
PATH_KEYS: dict[str, str] = {
    "pickled_model": "file",  # sklearn: model.pkl / model.skops
    "python_model": "file",  # custom pyfunc: python_model.pkl
    "model_path": "any",  # pyfunc conf of sklearn, paddle, shap...
    "data": "any",  # pyfunc, xgboost, lightgbm, onnx, keras...
    "model_data": "any",  # pytorch, spark
    "code": "dir",  # code_paths copied next to the model
    "saved_model_dir": "dir",  # tensorflow
}
PYTORCH_PICKLE = "model.pth"
PYTORCH_PICKLE_INFO = "pickle_module_info.txt"
PYTORCH_EXPORTED = "model.pt2"
# Flavors whose pickled_model is a file-name prefix the loader completes: paddle.jit.load reads
# model.pdiparams (+ .pdmodel or .json); sktime's load() opens str(path) + ".zip" (sktime's own
# flavor, "mlflow_sktime"; mlflavors' "sktime" flavor writes the pickle under its full name).
PREFIX_SUFFIX = {"paddle": ".pdiparams", "mlflow_sktime": ".zip"}
# Files a flavor's loader opens inside its `data` folder: h2o reads h2o.yaml (which names the
# model file); spacy.load reads meta.json (spaCy 2 and 3 both write it).
INNER_FILES = {"h2o": "h2o.yaml", "spacy": "meta.json"}
# Keras models in `data`: "model" plus the suffix of the format (.h5, .keras; none: a SavedModel
# folder), as mlflow.keras (1.x, 3.x) and mlflow.tensorflow (2.x) load them.
KERAS_FLAVORS = ("keras", "tensorflow")
KERAS_MODEL = "model"
_SEARCH_DEPTH = 4
_SEARCH_LIMIT = 5000


@dataclass(frozen=True)
class Need:
    """One path the loader will open: `rel` (posix, relative to the model root)."""

    rel: str
    kind: str  # "file", "dir" or "any"
    why: str
    alternatives: tuple[str, ...] = ()  # other rel paths that satisfy the need


def check_layout(model_dir: Path, spec: ModelSpec) -> None:
    """Raise LayoutError naming every path the loader needs that is missing."""
    model_dir = Path(model_dir)
    needs = required_paths(model_dir, spec)
    described = [_describe(model_dir, need) for need in needs]
    problems = [p for p in described if p]
    if not problems:
        # Whole top-level entries: a need may stand for a folder whose other files load too.
        tops = {PurePosixPath(n.rel).parts[0] for n in needs}
        tops.update(rel for rel in [spec.input_example_path] if rel)
        pointers = lfs.find_pointers(model_dir, sorted(tops))
        if pointers:
            raise LayoutError(
                f"model folder {model_dir} holds Git LFS pointers: " + "; ".join(pointers) + f"; {lfs.HINT}",
                path=str(model_dir),
                problems=pointers,
                lfs_pointers=True,
            )
        return
    raise LayoutError(
        f"model folder {model_dir} lacks what its MLmodel names: " + "; ".join(problems),
        path=str(model_dir),
        problems=problems,
    )


def missing_env_files(model_dir: Path, spec: ModelSpec) -> list[str]:
    """Environment files named by python_function's `env` that are absent (worth a warning only)."""
    return [rel for rel in spec.env_files.values() if not (Path(model_dir) / rel).is_file()]


def required_paths(model_dir: Path, spec: ModelSpec) -> list[Need]:
    """Every path the flavors' configuration names, de-duplicated; the saving flavor's first."""
    needs: dict[str, Need] = {}
    prefixes = {
        rel: suffix
        for flavor, suffix in PREFIX_SUFFIX.items()
        if (rel := _relative(spec.flavors.get(flavor, {}).get("pickled_model"))) is not None
    }
    flavors = sorted(spec.flavors.items(), key=lambda kv: kv[0] == "python_function")
    for flavor, conf in flavors:
        for need in _flavor_needs(Path(model_dir), flavor, conf):
            if need.rel in prefixes:
                need = Need(need.rel + prefixes[need.rel], "file", need.why)
            needs.setdefault(need.rel, need)
    # A folder that a deeper need lies in is covered by that need, which names the file to look for.
    return [n for n in needs.values() if not any(other.startswith(n.rel + "/") for other in needs)]


def _flavor_needs(model_dir: Path, flavor: str, conf: dict[str, Any]) -> Iterator[Need]:
    for key, kind in PATH_KEYS.items():
        rel = _relative(conf.get(key))
        if rel is not None:
            yield Need(rel, kind, f"{flavor}.{key}")
    if flavor == "python_function":
        artifacts = conf.get("artifacts")
        if isinstance(artifacts, dict):
            for name, info in artifacts.items():
                rel = _relative(info.get("path")) if isinstance(info, dict) else None
                if rel is not None:
                    yield Need(rel, "any", f"python_function artifact '{name}'")
        code_path = conf.get("model_code_path")
        # Written as the absolute path at logging time; the loader takes its basename.
        basename = PurePosixPath(code_path.replace("\\", "/")).name if isinstance(code_path, str) else ""
        if basename:
            yield Need(basename, "file", "python_function.model_code_path")
    if flavor == "pytorch":
        yield from _pytorch_needs(model_dir, conf)
    data = _relative(conf.get("data"))
    if data is not None and flavor in INNER_FILES and (model_dir / data).is_dir():
        yield Need(f"{data}/{INNER_FILES[flavor]}", "file", f"{flavor}.data")
    if data is not None and flavor in KERAS_FLAVORS and (model_dir / data).is_dir():
        # mlflow.tensorflow's SavedModel flavor has no `data`; its Keras models do.
        base = f"{data}/{KERAS_MODEL}"
        yield Need(base, "any", f"{flavor}.data", alternatives=(f"{base}.h5", f"{base}.keras"))


def _pytorch_needs(model_dir: Path, conf: dict[str, Any]) -> Iterator[Need]:
    # mlflow.pytorch._load_model: data/model.pth (+ pickle_module_info.txt), else data/model.pt2.
    rel = _relative(conf.get("model_data"))
    if rel is None or (model_dir / rel).is_file():
        return  # a plain file: MLflow hands it to torch.load as is
    why = "pytorch.model_data"
    if (model_dir / rel / PYTORCH_PICKLE).is_file():
        yield Need(f"{rel}/{PYTORCH_PICKLE_INFO}", "file", why)
    elif not (model_dir / rel / PYTORCH_EXPORTED).is_file():
        yield Need(f"{rel}/{PYTORCH_PICKLE}", "file", why, alternatives=(f"{rel}/{PYTORCH_EXPORTED}",))


def _relative(value: Any) -> str | None:
    """A flavor value that is a relative path, normalised to posix; None for anything else."""
    if not isinstance(value, str) or not value.strip() or "://" in value:
        return None
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute():
        return None
    parts = [p for p in path.parts if p != "."]
    return "/".join(parts) if parts else None


def _describe(model_dir: Path, need: Need) -> str | None:
    """None when the need is met, else one sentence on what is missing and what is there."""
    target = model_dir / need.rel
    if PurePosixPath(need.rel).parts[0] == ".." or not _inside(model_dir, target):
        return f"{need.rel} ({need.why}) points outside the model folder"
    if _present(target, need.kind) or any((model_dir / alt).exists() for alt in need.alternatives):
        return None
    wanted = {"file": "file", "dir": "folder", "any": "file or folder"}[need.kind]
    if target.exists():
        return f"{need.rel} ({need.why}) should be a {wanted}"
    name = " or ".join([need.rel, *need.alternatives])
    sentence = f"{name} ({need.why}) is missing"
    hint = _relocation_hint(model_dir, need)
    if hint:
        sentence += f": {hint}"
    return sentence + f". {_listing(model_dir, need.rel)}"


def _present(target: Path, kind: str) -> bool:
    if kind == "file":
        return target.is_file()
    if kind == "dir":
        return target.is_dir()
    return target.exists()


def _inside(model_dir: Path, target: Path) -> bool:
    root = os.path.normpath(os.path.abspath(model_dir))
    path = os.path.normpath(os.path.abspath(target))
    return path == root or path.startswith(root + os.sep)


def _relocation_hint(model_dir: Path, need: Need) -> str | None:
    """Explain a same-named entry at another depth: a flattened or a nested copy."""
    wanted = [PurePosixPath(rel) for rel in (need.rel, *need.alternatives)]
    for expected in wanted:
        found = sorted(
            (p for p in _walk(model_dir) if p.name == expected.name and p != expected),
            key=lambda p: (len(p.parts), str(p)),
        )
        if found:
            return _hint(model_dir, expected, found[0])
    return None


def _hint(model_dir: Path, expected: PurePosixPath, found: PurePosixPath) -> str:
    if len(found.parts) < len(expected.parts):
        where = "the model root" if len(found.parts) == 1 else f"{found.parent}/"
        return (
            f"{found.name} sits at {where} instead: the folder looks flattened by the tool that "
            "copied it (KServe's storage initializer does this with some S3 layouts, "
            "kserve/kserve#4341); copy the model folder with its subfolders intact"
        )
    if len(found.parts) > len(expected.parts) and str(found).endswith("/" + str(expected)):
        prefix = PurePosixPath(*found.parts[: len(found.parts) - len(expected.parts)])
        if (model_dir / prefix / "MLmodel").is_file():
            return f"it sits at {found}: the model seems to be in {prefix}/, so point the model URI at that folder"
        return (
            f"it sits at {found} instead: the tool that copied the folder moved it into a subfolder "
            "(KServe 0.11's storage initializer did this, kserve/kserve#3200)"
        )
    return f"a file of that name sits at {found} instead"


def _walk(model_dir: Path) -> Iterator[PurePosixPath]:
    """Relative paths under model_dir, bounded in depth and count (folders may be huge)."""
    seen = 0
    root = str(model_dir)
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        depth = 0 if rel_dir == "." else rel_dir.count(os.sep) + 1
        if depth >= _SEARCH_DEPTH:
            dirs[:] = []
        for name in dirs + files:
            seen += 1
            if seen > _SEARCH_LIMIT:
                return
            yield PurePosixPath(name) if rel_dir == "." else PurePosixPath(rel_dir, name)


def _listing(model_dir: Path, rel: str) -> str:
    text = f"The model folder holds: {list_entries(model_dir)}"
    parent = PurePosixPath(rel).parent
    if str(parent) != ".":
        folder = model_dir / parent
        if folder.is_dir():
            text += f"; {parent}/ holds: {list_entries(folder)}"
        else:
            text += f"; {parent}/ does not exist"
    return text
