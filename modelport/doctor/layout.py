"""[layout] Every file the flavors need is present; flattened and nested copies are named as such."""

from __future__ import annotations

from typing import Any

from modelport.doctor.context import Context
from modelport.doctor.report import FAIL, OK, WARN, CheckResult
from modelport.errors import ModelportError
from modelport.mlmodel import check_layout, lfs, missing_env_files, required_paths


def check_layout_files(ctx: Context) -> CheckResult:
    assert ctx.model_dir is not None and ctx.spec is not None
    needs = required_paths(ctx.model_dir, ctx.spec)
    details: dict[str, Any] = {"needed": [{"path": n.rel, "why": n.why} for n in needs]}
    try:
        check_layout(ctx.model_dir, ctx.spec)
    except ModelportError as exc:
        problems = list(exc.details.get("problems") or [exc.message])
        details["problems"] = problems
        flattened = any("flattened" in p for p in problems)
        if exc.details.get("lfs_pointers"):
            fix = lfs.HINT
        elif flattened:
            fix = "copy the model folder with its subfolders intact (a storage copy flattened it)"
        else:
            fix = "upload the whole folder MLflow saved (mlflow.<flavor>.save_model / log_model output)"
        return CheckResult("layout", FAIL, "; ".join(problems), fix, details)
    ctx.layout_ok = True
    missing_env = missing_env_files(ctx.model_dir, ctx.spec)
    if missing_env:
        details["missing_env_files"] = missing_env
        return CheckResult(
            "layout",
            WARN,
            f"the {_paths(len(needs))} the flavors need are present, but the environment files "
            f"{', '.join(missing_env)} named in MLmodel are missing",
            "copy them too: without them an isolated environment cannot be built",
            details,
        )
    return CheckResult(
        "layout",
        OK,
        f"the {_paths(len(needs))} the flavors need {'is' if len(needs) == 1 else 'are'} present",
        details=details,
    )


def _paths(n: int) -> str:
    return "path" if n == 1 else f"{n} paths"
