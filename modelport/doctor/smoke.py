"""[smoke] Serve the model for real (`modelport serve` in a subprocess, loopback, gRPC off) and predict
the input example over V2 and /invocations; where the target drifts from the model's own requirements,
serve it again in an environment built from them and compare the predictions.

Only the command line and HTTP are used, so this stays true whatever the server's internals become.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.doctor.context import Context
from modelport.doctor.report import FAIL, OK, WARN, CheckResult
from modelport.mlmodel.types import FieldSpec, ModelSpec

NAME = "doctor"
_PY_TYPES = {bool: "BOOL", int: "INT64", float: "FP64", str: "BYTES"}
_ZERO = {"BOOL": False, "BYTES": ""}


@dataclass
class Run:
    """One serve of the model: what loaded, what each endpoint answered."""

    label: str
    ready: bool = False
    seconds: float = 0.0
    error: str | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "seconds": round(self.seconds, 2),
            "error": self.error,
            "errors": self.errors,
            "answers": self.answers,
        }


def payloads(model_dir: Path, spec: ModelSpec) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(V2 request, /invocations body, where they came from): the input example, else the signature."""
    info = spec.raw.get("saved_input_example_info")
    info = info if isinstance(info, dict) else {}
    example = _read_json(model_dir / str(spec.input_example_path)) if spec.input_example_path else None
    serving = (
        _read_json(model_dir / str(info["serving_input_path"])) if info.get("serving_input_path") else None
    )
    if example is not None:
        v2 = _v2_from_example(example, spec)
        scoring = serving if isinstance(serving, dict) else _scoring_from_example(example)
        return v2, scoring, "the saved input example"
    return _v2_from_signature(spec), _scoring_from_signature(spec), "an input built from the signature"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _field(spec: ModelSpec, name: str | None, index: int) -> FieldSpec | None:
    sig = spec.signature
    if sig is None:
        return None
    for f in sig.inputs:
        if name is not None and f.name == name:
            return f
    return sig.inputs[index] if index < len(sig.inputs) else None


def _datatype(spec: ModelSpec, name: str | None, index: int, values: list[Any]) -> str:
    f = _field(spec, name, index)
    if f is not None:
        return f.datatype
    first = next((v for v in values if v is not None), 0.0)
    return _PY_TYPES.get(type(first), "BYTES")


def _shape(data: Any) -> list[int]:
    shape = []
    while isinstance(data, list):
        shape.append(len(data))
        data = data[0] if data else None
    return shape


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def _tensor(name: str, datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": _shape(data) or [1], "data": _flatten(data)}


def _v2_from_example(example: Any, spec: ModelSpec) -> dict[str, Any]:
    if isinstance(example, dict) and "columns" in example and "data" in example:
        columns, rows = example["columns"], example["data"]
        inputs = []
        for i, col in enumerate(columns):
            values = [row[i] for row in rows]
            inputs.append(
                {
                    "name": str(col),
                    "datatype": _datatype(spec, str(col), i, values),
                    "shape": [len(values)],
                    "data": values,
                }
            )
        return {"inputs": inputs}
    tensors = example.get("inputs", example) if isinstance(example, dict) else example
    if isinstance(tensors, dict):
        return {
            "inputs": [
                _tensor(str(k), _datatype(spec, str(k), i, _flatten(v)), v)
                for i, (k, v) in enumerate(tensors.items())
            ]
        }
    f = _field(spec, None, 0)
    name = f.name if f is not None and f.name else "input-0"
    return {"inputs": [_tensor(name, _datatype(spec, None, 0, _flatten(tensors)), tensors)]}


def _scoring_from_example(example: Any) -> dict[str, Any]:
    if isinstance(example, dict) and "columns" in example and "data" in example:
        return {"dataframe_split": {"columns": example["columns"], "data": example["data"]}}
    if isinstance(example, dict) and "inputs" in example:
        return {"inputs": example["inputs"]}
    return {"inputs": example}


def _zero_tensor(f: FieldSpec) -> Any:
    value = _ZERO.get(f.datatype, 0)
    data: Any = value
    for dim in reversed(f.shape or (1,)):
        data = [data] * (dim if dim > 0 else 1)
    return data


def _v2_from_signature(spec: ModelSpec) -> dict[str, Any]:
    sig = spec.signature
    if sig is None:
        return {"inputs": []}
    if sig.input_kind == "tensors":
        return {
            "inputs": [
                _tensor(f.name or f"input-{i}", f.datatype, _zero_tensor(f)) for i, f in enumerate(sig.inputs)
            ]
        }
    return {
        "inputs": [
            {"name": f.name, "datatype": f.datatype, "shape": [1], "data": [_ZERO.get(f.datatype, 0)]}
            for f in sig.inputs
            if f.required
        ]
    }


def _scoring_from_signature(spec: ModelSpec) -> dict[str, Any]:
    sig = spec.signature
    if sig is None:
        return {"inputs": []}
    if sig.input_kind == "tensors":
        if len(sig.inputs) == 1 and not sig.inputs[0].name:
            return {"inputs": _zero_tensor(sig.inputs[0])}
        return {"inputs": {f.name or f"input-{i}": _zero_tensor(f) for i, f in enumerate(sig.inputs)}}
    cols = [f for f in sig.inputs if f.required]
    return {
        "dataframe_split": {
            "columns": [f.name for f in cols],
            "data": [[_ZERO.get(f.datatype, 0) for f in cols]],
        }
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any], timeout: float = 60.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _log_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    wanted = [ln for ln in lines if "error" in ln.lower() or "Error" in ln]
    return " / ".join((wanted or lines)[-3:])[:1200] or "the server exited without a word"


def serve_and_predict(
    ctx: Context, label: str, env_args: list[str], v2: dict[str, Any], scoring: dict[str, Any]
) -> Run:
    """Start `modelport serve` with ``env_args``; predict over V2 and /invocations; stop it."""
    assert ctx.model_dir is not None
    run = Run(label)
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "modelport",
        "serve",
        str(ctx.model_dir),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(port),
        "--grpc-port",
        "0",
        "--name",
        NAME,
        "--workers",
        "1",
        "--cache-dir",
        str(ctx.settings.cache_dir),
        *(["--offline"] if ctx.settings.env.offline else []),
        *env_args,
    ]
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(ctx.environ)
        )
        try:
            deadline = started + ctx.options.smoke_timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if _ready(f"{base}/v2/health/ready"):
                    run.ready = True
                    break
                time.sleep(0.2)
            run.seconds = time.monotonic() - started
            if run.ready:
                for endpoint, body in ((f"/v2/models/{NAME}/infer", v2), ("/invocations", scoring)):
                    status, answer = _post(base + endpoint, body)
                    if status == 200:
                        run.answers[endpoint] = answer
                    else:
                        run.errors[endpoint] = (
                            f"HTTP {status}: {json.dumps(answer)[:600] if not isinstance(answer, str) else answer[:600]}"
                        )
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if not run.ready:
            log.seek(0)
            text = log.read().decode(errors="replace")
            run.error = (
                _log_error(text)
                if proc.returncode not in (None, 0) or run.seconds < ctx.options.smoke_timeout
                else f"not ready within {ctx.options.smoke_timeout:.0f} s"
            )
    return run


def same(a: Any, b: Any, rel: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Equal JSON values, floats within a tolerance."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol) or (a != a and b != b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, rel, abs_tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], rel, abs_tol) for k in a)
    return bool(a == b)


def _predictions(run: Run) -> Any:
    """What the model predicted, protocol framing removed (ids and model versions differ per server)."""
    out: dict[str, Any] = {}
    if "/invocations" in run.answers:
        out["invocations"] = run.answers["/invocations"]
    v2 = run.answers.get(f"/v2/models/{NAME}/infer")
    if isinstance(v2, dict):
        out["v2"] = [
            {k: o.get(k) for k in ("name", "datatype", "shape", "data")} for o in v2.get("outputs") or []
        ]
    return out


def check_smoke(ctx: Context) -> CheckResult:
    assert ctx.model_dir is not None and ctx.spec is not None
    v2, scoring, source = payloads(ctx.model_dir, ctx.spec)
    explicit = ctx.options.target_python is not None
    target = serve_and_predict(ctx, "target", ["--env", "local", "--python", ctx.target_python], v2, scoring)
    runs = {"target": target}
    own: Run | None = None
    if ctx.drifted or ctx.needs_isolated_env:
        own = serve_and_predict(ctx, "model's own", ["--env", "uv"], v2, scoring)
        runs["own"] = own
    details: dict[str, Any] = {
        "input": source,
        "v2_request": v2,
        "invocations_request": scoring,
        "runs": {k: r.summary() for k, r in runs.items()},
        "drifted": ctx.drifted,
    }
    where = f"{ctx.target_python}"
    target_ok = target.ready and not target.errors
    own_ok = own is not None and own.ready and not own.errors
    if not target_ok:
        why = target.error or "; ".join(f"{k}: {v}" for k, v in target.errors.items())
        if own_ok and ctx.needs_isolated_env and not explicit:
            return CheckResult(
                "smoke",
                WARN,
                f"under {where} the model fails ({why}); in an environment built from its own requirements it "
                f"loads and predicts ({source}), which is what `serve --env auto` uses",
                "keep --env auto (or build the environment ahead of time with `modelport env build`)",
                details,
            )
        return CheckResult(
            "smoke",
            FAIL,
            f"under {where} the model does not serve: {why}",
            "fix what the error names (see the environment and layout checks), then run doctor again",
            details,
        )
    done = f"loaded in {target.seconds:.1f} s under {where}; V2 infer and /invocations answered {source}"
    if own is None:
        return CheckResult("smoke", OK, done, details=details)
    if not own_ok:
        why = own.error or "; ".join(f"{k}: {v}" for k, v in own.errors.items())
        return CheckResult(
            "smoke",
            WARN,
            f"{done}; the environment built from the model's own requirements did not serve ({why}), so the "
            "predictions could not be compared",
            "check that the model's requirements install (doctor --build shows the error)",
            details,
        )
    a, b = _predictions(target), _predictions(own)
    packages = "; ".join(ctx.drifted[:6]) or "the environment"
    if not same(a, b):
        details["predictions"] = {"target": a, "own": b}
        return CheckResult(
            "smoke",
            FAIL,
            f"{done}; the predictions differ from those in the model's own environment: the drift ("
            f"{packages}) changes what the model predicts",
            "serve it in its own environment (--env uv / auto) or retrain and re-save it with the target's versions",
            details,
        )
    return CheckResult(
        "smoke",
        OK,
        f"{done}; same predictions in an environment built from the model's own requirements "
        f"(loaded in {own.seconds:.1f} s) despite the drift ({packages})",
        details=details,
    )
