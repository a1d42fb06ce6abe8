"""[fetch] The URI resolves with the credentials at hand; the tree `serve` would get, and its traps.

The model is resolved exactly as `serve` resolves it (local paths in place, remote URIs into the
cache); object-store prefixes that a naïve prefix copy would also pull in are named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelport.doctor.context import Context
from modelport.doctor.report import FAIL, OK, WARN, CheckResult
from modelport.storage import resolve_model
from modelport.storage.registry import LOCAL_SCHEMES, open_source, scheme_of
from modelport.storage.source import redact

# Files that are empty by design; any other empty file is usually a failed upload.
EMPTY_BY_DESIGN = {"__init__.py", ".keep", ".gitkeep", "py.typed"}
_SHOWN = 30


def check_fetch(ctx: Context) -> CheckResult:
    uri = ctx.options.uri
    model_dir = resolve_model(uri, ctx.settings.storage, ctx.settings.cache_dir)
    ctx.model_dir = model_dir
    ctx.files = list_tree(model_dir)
    total = ctx.model_bytes
    empty = [rel for rel, size in ctx.files if size == 0 and Path(rel).name not in EMPTY_BY_DESIGN]
    siblings = [] if scheme_of(uri) in LOCAL_SCHEMES else sibling_prefixes(uri, ctx)
    details: dict[str, Any] = {
        "path": str(model_dir),
        "files": len(ctx.files),
        "bytes": total,
        "tree": [{"path": rel, "bytes": size} for rel, size in ctx.files[:_SHOWN]],
        "empty_files": empty,
        "sibling_prefixes": siblings,
    }
    if len(ctx.files) > _SHOWN:
        details["tree_truncated"] = len(ctx.files) - _SHOWN
    where = "served in place" if scheme_of(uri) in LOCAL_SCHEMES else "fetched into the cache"
    message = f"{len(ctx.files)} files, {human_bytes(total)}, {where} at {model_dir}"
    if not ctx.files:
        return CheckResult(
            "fetch", FAIL, f"{redact(uri)} holds no files", "point the URI at the model folder", details
        )
    problems, fixes = [], []
    if empty:
        problems.append(f"empty file{'s' if len(empty) > 1 else ''}: {', '.join(empty[:5])}")
        fixes.append("re-upload the empty files (a zero-byte model file is usually a failed upload)")
    if siblings:
        problems.append(
            f"sibling prefix{'es' if len(siblings) > 1 else ''} {', '.join(siblings[:5])} start with the same "
            "name: a copy by plain prefix (KServe's storage initializer lists without a trailing '/') pulls "
            "them in too"
        )
        fixes.append("end the storageUri with '/' or rename the model folder so no sibling shares its prefix")
    if problems:
        return CheckResult("fetch", WARN, f"{message}; " + "; ".join(problems), "; ".join(fixes), details)
    return CheckResult("fetch", OK, message, details=details)


def list_tree(root: Path) -> list[tuple[str, int]]:
    """Every regular file below ``root`` as (posix relative path, size), sorted."""
    out = []
    for current, _dirs, names in os.walk(root, followlinks=True):
        for name in names:
            full = Path(current, name)
            if full.is_file():
                out.append((full.relative_to(root).as_posix(), full.stat().st_size))
    return sorted(out)


def sibling_prefixes(uri: str, ctx: Context) -> list[str]:
    """Object-store "folders" or objects next to the model's whose names start with its name."""
    source: Any = open_source(uri, ctx.settings.storage)
    store, prefix = getattr(source, "store", None), getattr(source, "prefix", None)
    if store is None or not prefix:
        return []  # HTTP, MLflow registry: there is no prefix to over-match
    import obstore

    prefix = prefix.strip("/")
    parent, _, name = prefix.rpartition("/")
    result = obstore.list_with_delimiter(store, prefix=parent or None)
    names = [p.rstrip("/").rsplit("/", 1)[-1] + "/" for p in result["common_prefixes"]]
    names += [o["path"].rsplit("/", 1)[-1] for o in result["objects"]]
    base = uri.rstrip("/")[: -len(name)] if uri.rstrip("/").endswith(name) else ""
    return sorted(base + n for n in names if n.startswith(name) and n.rstrip("/") != name)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
