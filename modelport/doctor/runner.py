"""Run the checks in order over one Context; a check that cannot run is skipped, with the reason."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelport.doctor.context import Context, Options
from modelport.doctor.environment import check_environment
from modelport.doctor.fetch import check_fetch
from modelport.doctor.kserve import check_kserve
from modelport.doctor.layout import check_layout_files
from modelport.doctor.mlmodel import check_mlmodel
from modelport.doctor.report import FAIL, SKIP, CheckResult, Report
from modelport.doctor.signature import check_signature
from modelport.doctor.smoke import check_smoke
from modelport.errors import ModelportError
from modelport.settings import Settings
from modelport.storage.source import redact

CheckFn = Callable[[Context], CheckResult]


@dataclass(frozen=True)
class Step:
    id: str
    run: CheckFn
    # Why it cannot run in this context (None: it can).
    blocked: Callable[[Context], str | None]


def _needs_model(ctx: Context) -> str | None:
    return None if ctx.model_dir is not None else "the model could not be fetched"


def _needs_spec(ctx: Context) -> str | None:
    return _needs_model(ctx) or (None if ctx.spec is not None else "MLmodel could not be read")


def _needs_loadable(ctx: Context) -> str | None:
    if not ctx.options.smoke:
        return "--no-smoke"
    return _needs_spec(ctx) or (None if ctx.layout_ok else "files the flavors need are missing (layout)")


STEPS: tuple[Step, ...] = (
    Step("fetch", check_fetch, lambda ctx: None),
    Step("mlmodel", check_mlmodel, _needs_model),
    Step("layout", check_layout_files, _needs_spec),
    Step("signature", check_signature, _needs_spec),
    Step("environment", check_environment, _needs_spec),
    Step("kserve", check_kserve, _needs_spec),
    Step("smoke", check_smoke, _needs_loadable),
)


def run_doctor(options: Options, settings: Settings, environ: Mapping[str, str]) -> Report:
    """Every check, in order; the report's exit code says 2 when the model URI could not be read."""
    ctx = Context(options, settings, environ)
    _check_arguments(ctx)
    results: list[CheckResult] = []
    try:
        _run_steps(ctx, results)
    finally:
        ctx.close()
    report = Report(redact(options.uri), results)
    report.unusable = ctx.model_dir is None
    return report


def _run_steps(ctx: Context, results: list[CheckResult]) -> None:
    options = ctx.options
    for step in STEPS:
        if step.id == "kserve" and not options.kserve_files:
            continue
        started = time.perf_counter()
        why = step.blocked(ctx)
        if why is not None:
            result = CheckResult(step.id, SKIP, f"not run: {why}")
        else:
            result = _run(step, ctx)
        result.seconds = time.perf_counter() - started
        results.append(result)
        if step.id == "mlmodel" and result.status not in (FAIL, SKIP):
            _start_background(ctx)


def _start_background(ctx: Context) -> None:
    """uv's resolution takes seconds: start it as soon as the requirements are known."""
    from modelport.doctor.environment import resolve

    if not ctx.options.build:
        try:
            model = ctx.model_environment()
        except ModelportError:
            return  # the environment check reports it
        ctx.start("resolution", lambda: resolve(model, ctx))


def _check_arguments(ctx: Context) -> None:
    """Bad arguments stop the command before any check (exit status 2), naming the argument."""
    import shutil

    from modelport.doctor.kserve import load_inputs
    from modelport.doctor.signature import release

    options = ctx.options
    if options.target_python and shutil.which(options.target_python) is None:
        raise ModelportError(f"--target-python {options.target_python}: no such interpreter")
    if options.target_mlflow:
        release(options.target_mlflow)
    if options.kserve_files:
        ctx.kserve = load_inputs(options.kserve_files)
    # The probe needs only the interpreter: start it now, beside the fetch.
    ctx.start("probe", ctx.probe)


def _run(step: Step, ctx: Context) -> CheckResult:
    try:
        return step.run(ctx)
    except ModelportError as exc:
        return CheckResult(
            step.id, FAIL, exc.message, details={"error": type(exc).__name__, **_plain(exc.details)}
        )
    except Exception as exc:  # a bug in a check must not hide the other checks' findings
        return CheckResult(step.id, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}")


def _plain(details: Mapping[str, object]) -> dict[str, object]:
    return {
        k: v if isinstance(v, (str, int, float, bool, list, type(None))) else str(v)
        for k, v in details.items()
    }
