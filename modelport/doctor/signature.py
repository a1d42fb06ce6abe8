"""[signature] Which MLflow versions read the saved signature as written, what the target does with it.

The version boundaries are modelport.mlmodel.compat's; the translation is ``rewrite_for_mlflow``, the
one `serve` applies, so "modelport serves it anyway" is what the server will do, not a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from modelport.doctor.context import Context
from modelport.doctor.report import FAIL, OK, WARN, CheckResult
from modelport.errors import ModelportError
from modelport.mlmodel import compat, rewrite_for_mlflow
from modelport.mlmodel.types import ModelSpec

Release = tuple[int, ...]
ANY_VERSION: Release = (0,)
NO_LIMIT: Release = (999,)


@dataclass(frozen=True)
class Need:
    """One thing in the saved MLmodel that only MLflow versions in [since, until) read."""

    what: str
    since: Release = ANY_VERSION
    until: Release = NO_LIMIT
    # What an MLflow outside the range raises, below `since` and from `until` on.
    error_before: str = ""
    error_after: str = ""

    def reads(self, version: Release) -> bool:
        return self.since <= version < self.until

    def error(self, version: Release) -> str:
        return self.error_before if version < self.since else self.error_after


def _unexpected(keyword: str, qualified: bool) -> str:
    # Python >= 3.10 names the class in the message (MLServer's 1.7 image runs 3.10).
    where = "ColSpec.__init__()" if qualified else "__init__()"
    return f"TypeError: {where} got an unexpected keyword argument '{keyword}'"


def signature_needs(spec: ModelSpec) -> list[Need]:
    """What the saved MLmodel needs of the MLflow that reads it, as written."""
    needs: list[Need] = []
    raw = spec.raw.get("signature")
    columns: list[dict[str, Any]] = []
    params: list[dict[str, Any]] = []
    if isinstance(raw, dict):
        for key in ("inputs", "outputs"):
            columns += _json_list(raw.get(key))
        params = _json_list(raw.get("params"))
    cols = [c for c in columns if c.get("type") != "tensor"]
    if any("required" in c for c in cols):
        needs.append(
            Need(
                "columns written with 'required'",
                compat.REQUIRED_SINCE,
                error_before=_unexpected("required", False),
            )
        )
    if any("optional" in c for c in cols):
        needs.append(
            Need(
                "columns written with 'optional'",
                compat.OPTIONAL_SINCE,
                compat.OPTIONAL_DROPPED,
                error_before=_unexpected("optional", False),
                error_after=_unexpected("optional", True),
            )
        )
    types: set[str] = set()
    for col in columns:
        types |= _types_in(col)
    for name in sorted(types):
        since = compat.TYPE_SINCE.get(name)
        if since:
            needs.append(
                Need(f"the type '{name}'", since, error_before=f"MlflowException: Unsupported type '{name}'")
            )
    if any("type" in p for p in params):
        needs.append(Need("params written with 'type'", compat.PARAMS_TYPE_KEY_SINCE))
    if any((p.get("type") or p.get("dtype")) == "object" for p in params):
        needs.append(Need("object-typed params", compat.OBJECT_PARAMS_SINCE))
    for flavor, conf in spec.flavors.items():
        if conf.get("serialization_format") == "skops":
            needs.append(
                Need(
                    f"the {flavor} flavor's skops format",
                    compat.SKOPS_SINCE,
                    error_before="MlflowException: Unrecognized serialization format: skops",
                )
            )
    return needs


def _types_in(node: Any) -> set[str]:
    """Every MLflow type a column spec names, nested ones (array items, object properties) too."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            found.add(node["type"])
        for key in ("items", "values"):
            found |= _types_in(node.get(key))
        if isinstance(node.get("properties"), dict):
            for prop in node["properties"].values():
                found |= _types_in(prop)
    return found


def _json_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def readable_range(needs: list[Need]) -> tuple[Release, Release]:
    since = max((n.since for n in needs), default=ANY_VERSION)
    until = min((n.until for n in needs), default=NO_LIMIT)
    return since, until


def describe_range(since: Release, until: Release) -> str:
    low = ".".join(map(str, since))
    high = ".".join(map(str, until))
    if since >= until:
        return "no MLflow version"
    if since == ANY_VERSION and until == NO_LIMIT:
        return "every MLflow version"
    if until == NO_LIMIT:
        return f"MLflow >= {low}"
    if since == ANY_VERSION:
        return f"MLflow < {high}"
    return f"MLflow >= {low} and < {high}"


def release(version: str) -> Release:
    try:
        return Version(version).release
    except InvalidVersion as exc:
        raise ModelportError(f"not an MLflow version: {version!r}") from exc


def errors_for(needs: list[Need], version: str) -> list[str]:
    """What MLflow ``version`` raises reading the MLmodel as written (empty: it reads it)."""
    v = release(version)
    return [f"{n.what}: {n.error(v) or 'not readable'}" for n in needs if not n.reads(v)]


def translation(spec: ModelSpec, version: str) -> tuple[str, str | None]:
    """("none" | "rewrite" | "refused", why) for what `serve` does under MLflow ``version``."""
    try:
        rewritten = rewrite_for_mlflow(spec, version)
    except ModelportError as exc:
        return "refused", exc.message
    return ("rewrite", None) if rewritten is not None else ("none", None)


def check_signature(ctx: Context) -> CheckResult:
    from modelport.doctor.kserve import mlserver_verdict

    assert ctx.spec is not None
    spec = ctx.spec
    needs = signature_needs(spec)
    since, until = readable_range(needs)
    readers = describe_range(since, until)
    target, source = ctx.target_mlflow()
    details: dict[str, Any] = {
        "readable_as_written_by": readers,
        "needs": [
            {
                "what": n.what,
                "since": ".".join(map(str, n.since)),
                "until": None if n.until == NO_LIMIT else ".".join(map(str, n.until)),
            }
            for n in needs
        ],
        "target_mlflow": target,
        "target_source": source,
    }
    saved = spec.mlflow_version or "an unknown MLflow"
    head = f"saved by {saved}; read as written by {readers}"
    if spec.signature is None:
        head = f"no signature (saved by {saved}); read as written by {readers}"
    status, parts, fixes = OK, [head], []
    if target is None:
        status = FAIL
        parts.append(f"the target interpreter {ctx.target_python} has no mlflow")
        fixes.append("install mlflow there, or pass --target-mlflow")
    else:
        errors = errors_for(needs, target)
        mode, why = translation(spec, target)
        details.update(target_errors=errors, modelport=mode)
        if mode == "refused":
            status = FAIL
            parts.append(
                f"MLflow {target} ({source}) cannot read it and modelport cannot translate it: {why}"
            )
            fixes.append(
                f"serve with MLflow {'.'.join(map(str, since))} or newer (modelport picks it with --env uv)"
            )
        elif errors:
            status = WARN
            parts.append(
                f"MLflow {target} ({source}) would fail to read it as written ({'; '.join(errors)}); "
                f"modelport serves it anyway: it rewrites the MLmodel for {target} in a shadow folder"
            )
            fixes.append("serve it with modelport, or re-save it with an MLflow both sides read")
        elif mode == "rewrite":
            parts.append(f"MLflow {target} reads it; modelport rewrites a deprecated spelling for it")
        else:
            parts.append(f"MLflow {target} ({source}) reads it as written")
    verdict = mlserver_verdict(ctx, needs)
    if verdict is not None:
        details["mlserver"] = verdict
        if verdict["errors"]:
            status = FAIL
            parts.append(verdict["message"])
            fixes.append(verdict["fix"])
    return CheckResult("signature", status, "; ".join(parts), "; ".join(fixes), details)
