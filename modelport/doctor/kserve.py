"""[kserve] What KServe would do with the InferenceService: runtime, protocol, storage container,
resources, schema. Runtime selection is modelport.kserve.selection (KServe's rules, restated).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from modelport.doctor import kserve_defaults as builtin
from modelport.doctor.context import Context, KserveInputs
from modelport.doctor.fetch import human_bytes
from modelport.doctor.report import FAIL, OK, WARN, CheckResult
from modelport.doctor.schema import ISVC_SCHEMA, validate, validate_against_crd
from modelport.errors import ModelportError
from modelport.kserve.selection import RUNTIME_KINDS, Selection, select_runtime

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the full CRD is 2 MB of YAML
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "m": 0.001,
}
# Loading a pickled model takes about its size again in memory, plus the server and the libraries.
LOAD_FACTOR = 2.0
SERVER_OVERHEAD = 400 * 10**6
# An isolated environment (measured: mlflow 2.x + scikit-learn 584 MB); big frameworks add theirs.
ENV_BASE_BYTES = 600 * 10**6
ENV_FLAVOR_BYTES = {
    "pytorch": 4_000 * 10**6,
    "tensorflow": 2_000 * 10**6,
    "keras": 2_000 * 10**6,
    "transformers": 4_500 * 10**6,
}


def load_inputs(paths: tuple[str, ...]) -> KserveInputs:
    """The InferenceService, runtimes, storage containers, CRDs and TrainedModels in the --kserve files."""
    isvcs: list[dict[str, Any]] = []
    found = KserveInputs(isvc={})
    for path in paths:
        try:
            docs = list(yaml.load_all(Path(path).read_text(), Loader=_LOADER))
        except (OSError, yaml.YAMLError) as exc:
            raise ModelportError(f"--kserve {path}: cannot read it: {exc}") from exc
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            kind = doc.get("kind")
            if kind == "InferenceService":
                isvcs.append(doc)
            elif kind in RUNTIME_KINDS:
                found.runtimes.append(doc)
            elif kind == "ClusterStorageContainer":
                found.storage_containers.append(doc)
            elif kind == "CustomResourceDefinition":
                found.crds.append(doc)
            elif kind == "TrainedModel":
                found.trained_models.append(doc)
    if len(isvcs) != 1:
        raise ModelportError(
            f"--kserve: expected one InferenceService in {', '.join(paths)}, found {len(isvcs)}"
        )
    found.isvc = isvcs[0]
    return found


def _name(doc: dict[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def _with_builtins(given: list[dict[str, Any]], defaults: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    names = {(d.get("kind"), _name(d)) for d in given}
    return given + [d for d in defaults if (d.get("kind"), _name(d)) not in names]


def inputs(ctx: Context) -> KserveInputs | None:
    if not ctx.options.kserve_files:
        return None
    if ctx.kserve is None:
        ctx.kserve = load_inputs(ctx.options.kserve_files)
    return ctx.kserve


def selection(ctx: Context) -> Selection | None:
    """The runtime KServe would select (None without --kserve); the given runtimes win over built-ins."""
    found = inputs(ctx)
    if found is None:
        return None
    if ctx.selection is None:
        try:
            ctx.selection = select_runtime(
                found.isvc, _with_builtins(found.runtimes, builtin.BUILTIN_RUNTIMES)
            )
        except (ValueError, KeyError, TypeError) as exc:
            ctx.selection = Selection(None, f"the InferenceService cannot be matched: {exc}")
    return ctx.selection


def _runtime_doc(ctx: Context, name: str) -> dict[str, Any] | None:
    found = inputs(ctx)
    runtimes = _with_builtins(found.runtimes if found else [], builtin.BUILTIN_RUNTIMES)
    return next((r for r in runtimes if _name(r) == name), None)


def _is_mlserver(runtime: dict[str, Any] | None, name: str) -> bool:
    annotations = ((runtime or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get("serving.kserve.io/server-type") == "mlserver" or name == "kserve-mlserver"


def mlserver_verdict(ctx: Context, needs: list[Any]) -> dict[str, Any] | None:
    """Where the InferenceService would get kserve-mlserver: the error MLServer's mlflow would raise."""
    from modelport.doctor.signature import errors_for

    chosen = selection(ctx)
    if (
        chosen is None
        or chosen.runtime is None
        or not _is_mlserver(_runtime_doc(ctx, chosen.runtime), chosen.runtime)
    ):
        return None
    errors = errors_for(needs, builtin.MLSERVER_MLFLOW)
    where = f"{chosen.runtime} (MLServer {builtin.MLSERVER_VERSION}, mlflow {builtin.MLSERVER_MLFLOW})"
    if not errors:
        message = f"{where}, which KServe would select, reads the signature"
    else:
        message = f"{where}, which KServe would select, cannot load the model: {'; '.join(errors)}"
    return {
        "runtime": chosen.runtime,
        "mlflow": builtin.MLSERVER_MLFLOW,
        "errors": errors,
        "message": message,
        "fix": "serve it with modelport: set spec.predictor.model.runtime: modelport-mlflow "
        "(MLServer has no translation for what its mlflow cannot read)",
    }


def parse_quantity(value: Any) -> float | None:
    """A Kubernetes quantity ("2Gi", "500M", 1e9) in bytes; None when unset or unreadable."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2)]


def storage_container(
    uri: str, isvc: dict[str, Any], given: list[dict[str, Any]]
) -> tuple[str, str | None, str]:
    """(status, container name, why) for who fetches ``uri``, as KServe's ValidateStorageURI decides."""
    containers = sorted(_with_builtins(given, builtin.BUILTIN_STORAGE), key=_name)  # the API lists by name
    if uri.startswith("pvc://"):
        return OK, None, "pvc:// is mounted by KServe itself, no storage container runs"
    if uri.startswith(("oci://", "oci+native://", "oci+fetch://")):
        return OK, None, "oci:// is served by KServe's modelcar sidecar"
    usable = [
        c
        for c in containers
        if (c.get("spec") or {}).get("disabled") is not True
        and (c.get("spec") or {}).get("workloadType", "initContainer") == "initContainer"
    ]
    wanted = ((isvc.get("spec") or {}).get("predictor") or {}).get("storageContainerName")
    if wanted:
        match = next((c for c in usable if _name(c) == wanted), None)
        if match is None:
            return FAIL, None, f"storageContainerName {wanted} names no usable ClusterStorageContainer"
        if not _supports(match, uri):
            return FAIL, wanted, f"ClusterStorageContainer {wanted} does not support storageUri {uri}"
        return OK, wanted, f"named by spec.predictor.storageContainerName: {wanted}"
    matching = [_name(c) for c in usable if _supports(c, uri)]
    if matching:
        why = f"{matching[0]} claims it"
        if len(matching) > 1:
            why += (
                f" (so do {', '.join(matching[1:])}: KServe takes the first listed, by name; set "
                "spec.predictor.storageContainerName to choose)"
            )
        return OK, matching[0], why
    if not re.search(r"\w+?://", uri):
        return WARN, None, f"{uri} has no scheme KServe knows: it takes it as a local path in the container"
    if "blob.core.windows.net" in uri and re.search(builtin.AZURE_BLOB_REGEX, uri):
        return OK, None, "KServe's built-in storage initializer handles Azure blob URLs"
    if uri.startswith(builtin.KSERVE_URI_PREFIXES):
        return OK, None, "KServe's built-in storage initializer handles it"
    return (
        FAIL,
        None,
        f"KServe refuses the InferenceService: storageUri, must be one of: [{', '.join(builtin.KSERVE_URI_PREFIXES)}] "
        f"or match https://{{}}.blob.core.windows.net/{{}}/{{}} or be an absolute or relative local path. "
        f"StorageUri [{uri}] is not supported",
    )


def _supports(container: dict[str, Any], uri: str) -> bool:
    for fmt in (container.get("spec") or {}).get("supportedUriFormats") or []:
        if fmt.get("prefix"):
            if uri.startswith(fmt["prefix"]):
                return True
        elif fmt.get("regex") and re.search(fmt["regex"], uri):
            return True
    return False


def _resources(isvc: dict[str, Any], runtime: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The predictor container's resources: the InferenceService's over the runtime's, per key."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    own = (predictor.get("model") or {}).get("resources") or {}
    containers = ((runtime or {}).get("spec") or {}).get("containers") or [{}]
    base = containers[0].get("resources") or {}
    return {k: {**(base.get(k) or {}), **(own.get(k) or {})} for k in ("requests", "limits")}


def check_kserve(ctx: Context) -> CheckResult:
    found = inputs(ctx)
    assert found is not None
    isvc = found.isvc
    details: dict[str, Any] = {}
    status, parts, fixes = OK, [], []

    def worse(new: str) -> None:
        nonlocal status
        if new == FAIL or (new == WARN and status == OK):
            status = new

    schema_errors = validate(isvc, ISVC_SCHEMA)
    crd = next(
        (
            c
            for c in found.crds
            if ((c.get("spec") or {}).get("names") or {}).get("kind") == "InferenceService"
        ),
        None,
    )
    if crd is not None:
        schema_errors += [e for e in validate_against_crd(isvc, crd) if e not in schema_errors]
    details["schema"] = {
        "against": "the CRD given" if crd else "doctor's schema of the fields it reads",
        "errors": schema_errors,
    }
    if schema_errors:
        worse(FAIL)
        parts.append(f"the InferenceService is invalid: {'; '.join(schema_errors[:5])}")
        fixes.append("fix the fields named")
        return CheckResult("kserve", status, "; ".join(parts), "; ".join(fixes), details)

    chosen = selection(ctx)
    assert chosen is not None
    details["selection"] = {
        "runtime": chosen.runtime,
        "kind": chosen.kind,
        "reason": chosen.reason,
        "candidates": list(chosen.candidates),
        "protocol": chosen.protocol,
    }
    runtime = _runtime_doc(ctx, chosen.runtime) if chosen.runtime else None
    if chosen.runtime is None:
        worse(FAIL)
        parts.append(f"no ServingRuntime: {chosen.reason}")
        fixes.append(
            "name a runtime that serves mlflow (spec.predictor.model.runtime: modelport-mlflow) or fix the format/protocol"
        )
    else:
        parts.append(f"runtime {chosen.runtime} ({chosen.reason}), serving {chosen.protocol}")
        declared = ((runtime or {}).get("spec") or {}).get("protocolVersions") or []
        if declared and chosen.protocol not in declared:
            worse(FAIL)
            parts.append(
                f"{chosen.runtime} does not serve {chosen.protocol} (it serves {', '.join(declared)})"
            )
            fixes.append(f"set protocolVersion to one of {', '.join(declared)}")
        verdict = mlserver_verdict(ctx, _needs(ctx))
        if verdict is not None:
            details["mlserver"] = verdict
            if verdict["errors"]:
                worse(FAIL)
                parts.append(verdict["message"])
                fixes.append(verdict["fix"])

    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    uri = model.get("storageUri")
    if uri:
        sc_status, sc_name, why = storage_container(str(uri), isvc, found.storage_containers)
        details["storage"] = {"uri": uri, "container": sc_name, "why": why}
        worse(sc_status)
        parts.append(f"storageUri {uri}: {why}")
        if sc_status == FAIL:
            fixes.append(
                "use a URI a ClusterStorageContainer claims (modelport's claims s3, gs, http(s), az, models:/, runs:/) or install one that does"
            )
    else:
        mm_status, mm_text, mm_fix, details["multi_model"] = _multi_model(isvc, runtime, found.trained_models)
        worse(mm_status)
        parts.append(mm_text)
        if mm_fix:
            fixes.append(mm_fix)

    res_status, res_text, res_fix, res_details = _fit(ctx, isvc, runtime)
    details["resources"] = res_details
    worse(res_status)
    parts.append(res_text)
    if res_fix:
        fixes.append(res_fix)
    return CheckResult("kserve", status, "; ".join(parts), "; ".join(fixes), details)


def _multi_model(
    isvc: dict[str, Any], runtime: dict[str, Any] | None, trained_models: list[dict[str, Any]]
) -> tuple[str, str, str, dict[str, Any]]:
    """No storageUri: KServe serves the InferenceService as a multi-model server, whose models come
    as TrainedModels that its agent downloads. Checks the runtime, and what KServe checks of the
    TrainedModels given that name this InferenceService (name, storageUri, memory)."""
    name = _name(isvc)
    namespace = (isvc.get("metadata") or {}).get("namespace", "default")
    runtime_name = _name(runtime) if runtime else ""
    if not ((runtime or {}).get("spec") or {}).get("multiModel"):
        but = (
            f", but {runtime_name} is a single-model runtime: it starts with no model folder"
            if runtime
            else ""
        )
        return (
            WARN,
            "no storageUri: KServe serves the InferenceService as a multi-model server (its agent loads "
            f"TrainedModels){but}",
            "set spec.predictor.model.storageUri, or name modelport-mlflow-multimodel "
            "(spec.predictor.model.runtime) and publish TrainedModels",
            {"trained_models": []},
        )
    mine = [
        tm
        for tm in trained_models
        if ((tm.get("spec") or {}).get("inferenceService") == name)
        and (tm.get("metadata") or {}).get("namespace", "default") == namespace
    ]
    if not mine:
        return (
            OK,
            f"no storageUri: multi-model ({runtime_name}), it starts empty and serves the TrainedModels "
            f"naming {name} (none given to --kserve)",
            "",
            {"trained_models": []},
        )
    status, problems, fixes = OK, [], []
    rows: list[dict[str, Any]] = []
    total = 0.0
    for tm in mine:
        tm_name = _name(tm)
        model = (tm.get("spec") or {}).get("model") or {}
        uri = str(model.get("storageUri") or "")
        memory = parse_quantity(model.get("memory"))
        rows.append({"name": tm_name, "storageUri": uri, "memory": model.get("memory")})
        if not re.match(builtin.TRAINED_MODEL_NAME, tm_name):
            status = FAIL
            problems.append(f"KServe refuses TrainedModel {tm_name!r}: a name is letters, digits, '_' or '-'")
            fixes.append(f"rename TrainedModel {tm_name!r}")
        if not uri.startswith(builtin.AGENT_URI_PREFIXES):
            status = FAIL
            problems.append(
                f"KServe refuses TrainedModel {tm_name}: its agent downloads only "
                f"{', '.join(builtin.AGENT_URI_PREFIXES)}, not {uri or 'an empty storageUri'}"
            )
            fixes.append(
                f"put {tm_name}'s model where the agent reaches it (s3://, gs://, http(s)://); "
                "models:/, runs:/ and az:// work with the single-model runtime modelport-mlflow"
            )
        if memory is None:
            status = FAIL
            problems.append(f"TrainedModel {tm_name} has no valid spec.model.memory (KServe requires it)")
            fixes.append(f"set spec.model.memory on {tm_name}")
        else:
            total += memory
    own = (((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("resources") or {}
    limit_text = (own.get("limits") or {}).get("memory") or builtin.DEFAULT_MEMORY_LIMIT
    limit = parse_quantity(limit_text)
    if limit is not None and total > limit:
        status = FAIL
        problems.append(
            f"the TrainedModels' memory adds up to {human_bytes(int(total))}, over the InferenceService's "
            f"memory limit {limit_text}: KServe's TrainedModel controller leaves the ones past it unloaded"
        )
        fixes.append(
            f"raise spec.predictor.model.resources.limits.memory to {human_bytes(int(total))} or more"
        )
    names = ", ".join(_name(tm) for tm in mine)
    text = (
        f"no storageUri: multi-model ({runtime_name}); TrainedModels {names}: memory "
        f"{human_bytes(int(total))} in all, the InferenceService's limit {limit_text}"
    )
    if problems:
        text += "; " + "; ".join(problems)
    details = {"trained_models": rows, "memory_total": int(total), "memory_limit": limit_text}
    return status, text, "; ".join(fixes), details


def _needs(ctx: Context) -> list[Any]:
    from modelport.doctor.signature import signature_needs

    return signature_needs(ctx.spec) if ctx.spec is not None else []


def _fit(
    ctx: Context, isvc: dict[str, Any], runtime: dict[str, Any] | None
) -> tuple[str, str, str, dict[str, Any]]:
    res = _resources(isvc, runtime)
    model_bytes = ctx.model_bytes
    flavor = ctx.spec.primary_flavor if ctx.spec else ""
    builds_env = ctx.needs_isolated_env and runtime is not None and _name(runtime) == "modelport-mlflow"
    env_bytes = (ctx.env_bytes or ENV_BASE_BYTES + ENV_FLAVOR_BYTES.get(flavor, 0)) if builds_env else 0
    memory_needed = model_bytes * LOAD_FACTOR + SERVER_OVERHEAD
    disk_needed = model_bytes + env_bytes
    details: dict[str, Any] = {
        "model_bytes": model_bytes,
        "env_bytes": env_bytes,
        "memory_needed": int(memory_needed),
        "disk_needed": disk_needed,
        "requests": res["requests"],
        "limits": res["limits"],
    }
    texts, status, fixes = [], OK, []
    for key, needed, what in (
        ("memory", memory_needed, "memory"),
        ("ephemeral-storage", disk_needed, "disk"),
    ):
        request = parse_quantity(res["requests"].get(key))
        limit = parse_quantity(res["limits"].get(key))
        have = f"request {res['requests'].get(key, 'unset')}, limit {res['limits'].get(key, 'unset')}"
        texts.append(f"{what} ~{human_bytes(needed)} needed ({have})")
        if limit is not None and needed > limit:
            status = FAIL
            fixes.append(f"raise the {key} limit above {human_bytes(needed)}")
        elif request is not None and needed > request and status != FAIL:
            status = WARN
            fixes.append(
                f"raise the {key} request to {human_bytes(needed)} (above it the pod is evicted first)"
            )
    note = " (model, and the environment `--env auto` builds in the pod)" if env_bytes else ""
    return status, "resources: " + "; ".join(texts) + note, "; ".join(fixes), details
