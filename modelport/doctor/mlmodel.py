"""[mlmodel] MLmodel parses; its flavors, the MLflow that saved it, the signature's shape, the example."""

from __future__ import annotations

from typing import Any

from modelport.doctor.context import Context
from modelport.doctor.report import FAIL, OK, WARN, CheckResult
from modelport.mlmodel import read_model_spec


def check_mlmodel(ctx: Context) -> CheckResult:
    assert ctx.model_dir is not None
    spec = read_model_spec(ctx.model_dir)
    ctx.spec = spec
    sig = spec.signature
    example = spec.input_example_path
    example_present = bool(example) and (ctx.model_dir / str(example)).is_file()
    details: dict[str, Any] = {
        "flavors": list(spec.flavors),
        "primary_flavor": spec.primary_flavor,
        "loader_module": spec.loader_module,
        "mlflow_version": spec.mlflow_version,
        "python_version": spec.python_version,
        "signature": None
        if sig is None
        else {
            "inputs": sig.input_kind,
            "outputs": sig.output_kind,
            "input_names": [f.name for f in sig.inputs],
            "params": [p.name for p in sig.params],
        },
        "input_example": example if example_present else None,
    }
    flavors = ", ".join(f for f in spec.flavors if f != "python_function") or "python_function"
    saved = f"saved by MLflow {spec.mlflow_version}" if spec.mlflow_version else "MLflow version not recorded"
    parts = [f"{flavors} model {saved}"]
    if sig is None:
        parts.append("no signature")
    else:
        shape = f"{len(sig.inputs)} input {sig.input_kind}" + (
            f", {len(sig.params)} params" if sig.params else ""
        )
        parts.append(f"signature: {shape} -> {sig.output_kind}")
    parts.append("input example present" if example_present else "no input example")
    message = "; ".join(parts)
    if "python_function" not in spec.flavors:
        return CheckResult(
            "mlmodel",
            FAIL,
            f"{message}; no python_function flavor, so MLflow's pyfunc loader (which every server uses) "
            "cannot load it, and modelport serve refuses it before starting a worker",
            "save the model with a flavor that writes python_function (mlflow.<flavor>.save_model does)",
            details,
        )
    if example and not example_present:
        return CheckResult(
            "mlmodel",
            WARN,
            f"{message}; MLmodel names the input example {example}, which is missing",
            "copy the whole model folder (the example is what smoke tests and KServe's users send first)",
            details,
        )
    return CheckResult("mlmodel", OK, message, details=details)
