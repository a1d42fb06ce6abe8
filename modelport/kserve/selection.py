"""Which serving runtime KServe gives an InferenceService, and whether KServe's webhook admits a runtime.

A restatement of KServe's Go code at commit aaac4e29 (after v0.20.0), kept rule for rule:
``ModelSpec.GetSupportingRuntimes``, ``RuntimeSupportsModel``, ``sortServingRuntimeList`` and
``sortSupportedRuntimeByPriority`` (pkg/apis/serving/v1beta1/predictor_model.go), ``reconcileModel``
(pkg/controller/v1beta1/inferenceservice/components/predictor.go), the InferenceService defaulter and
the ServingRuntime validating webhook (pkg/webhook/admission/servingruntime).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

KSERVE_COMMIT = "aaac4e294dae2c7b1aa1886447793f3aa1c30912"

Manifest = Mapping[str, Any]

# constants.GetProtocolVersionInt: runtimes are listed lowest first; anything else is Unknown (5).
PROTOCOL_RANK = {"v1": 1, "v2": 2, "grpc-v1": 3, "grpc-v2": 4}
UNKNOWN_RANK = 5
# ModelSpec.GetProtocol: what an InferenceService without protocolVersion is matched with.
DEFAULT_PROTOCOL = "v1"
# The defaulter sets v2 for these model format names only.
V2_DEFAULT_FORMATS = frozenset({"triton", "vLLM"})
SERVER_TYPE_ANNOTATION = "serving.kserve.io/server-type"
# constants.GetServerTypeFromRuntimeName, used when a runtime has no server-type annotation.
SERVER_TYPE_BY_NAME = {
    "kserve-mlserver": "mlserver",
    "kserve-torchserve": "torchserve",
    "kserve-tritonserver": "tritonserver",
}
# isvc.SetRuntimeDefaults: the protocol a server type fills in when the InferenceService sets none.
PROTOCOL_BY_SERVER_TYPE = {"mlserver": "v2", "tritonserver": "v2", "torchserve": "v1"}

RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")


@dataclass(frozen=True)
class Selection:
    """The runtime KServe would use (None: the InferenceService fails), why, and who else qualified."""

    runtime: str | None
    reason: str
    candidates: tuple[str, ...] = ()
    kind: str | None = None
    # The protocolVersion the InferenceService ends up with (KServe fills it in when unset).
    protocol: str | None = None


def _spec(runtime: Manifest) -> Mapping[str, Any]:
    return runtime.get("spec") or {}


def _name(doc: Manifest) -> str:
    return str(doc["metadata"]["name"])


def _model(isvc: Manifest) -> Mapping[str, Any]:
    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model")
    if not model or "modelFormat" not in model:
        raise ValueError("the InferenceService has no spec.predictor.model.modelFormat")
    return model


def _created(runtime: Manifest) -> float:
    stamp = (runtime.get("metadata") or {}).get("creationTimestamp")
    if isinstance(stamp, datetime):  # yaml parses unquoted timestamps
        return stamp.timestamp()
    if isinstance(stamp, str) and stamp:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return 0.0  # metav1.Time zero value: no order between two of them


def model_protocol(model: Mapping[str, Any]) -> str | None:
    """protocolVersion after the InferenceService defaulter (None: still unset)."""
    protocol = model.get("protocolVersion")
    if protocol is None and model["modelFormat"].get("name") in V2_DEFAULT_FORMATS:
        return "v2"
    return protocol


def model_label(model: Mapping[str, Any]) -> str:
    fmt = model["modelFormat"]
    version = fmt.get("version")
    return f"mt:{fmt['name']}" + (f":{version}" if version is not None else "")


def runtime_labels(runtime: Manifest, explicit: bool) -> set[str]:
    """Labels a runtime offers; autoSelect matters only when the InferenceService names no runtime."""
    labels = set()
    for fmt in _spec(runtime).get("supportedModelFormats") or []:
        if explicit or fmt.get("autoSelect") is True:
            labels.add(f"mt:{fmt['name']}")
            if fmt.get("version") is not None:
                labels.add(f"mt:{fmt['name']}:{fmt['version']}")
    return labels


def supports_model(runtime: Manifest, model: Mapping[str, Any], explicit: bool) -> bool:
    return model_label(model) in runtime_labels(runtime, explicit)


def supports_protocol(runtime: Manifest, protocol: str | None) -> bool:
    declared = _spec(runtime).get("protocolVersions")
    return not protocol or not declared or protocol in declared


def protocol_rank(runtime: Manifest) -> int:
    declared = _spec(runtime).get("protocolVersions") or []
    return min((PROTOCOL_RANK.get(p, UNKNOWN_RANK) for p in declared), default=UNKNOWN_RANK)


def priority(runtime: Manifest, format_name: str) -> int | None:
    """ServingRuntimeSpec.GetPriority: the first entry with that name counts, whatever its version."""
    for fmt in _spec(runtime).get("supportedModelFormats") or []:
        if fmt.get("name") == format_name:
            value = fmt.get("priority")
            return None if value is None else int(value)
    return None


def _by_priority(runtimes: list[Manifest], format_name: str) -> list[Manifest]:
    # Stable: a set priority first, higher first; runtimes without one keep their order, last.
    def key(rt: Manifest) -> tuple[int, int]:
        p = priority(rt, format_name)
        return (0, -p) if p is not None else (1, 0)

    return sorted(runtimes, key=key)


def _listed(runtimes: Iterable[Manifest]) -> list[Manifest]:
    # sort(Cluster)ServingRuntimeList: lowest protocol first, then newest first, then by name.
    return sorted(runtimes, key=lambda rt: (protocol_rank(rt), -_created(rt), _name(rt)))


def _in_namespace(runtime: Manifest, namespace: str) -> bool:
    ns = (runtime.get("metadata") or {}).get("namespace")
    return ns is None or ns == namespace


def _server_type(runtime: Manifest) -> str:
    annotations = (runtime.get("metadata") or {}).get("annotations") or {}
    if SERVER_TYPE_ANNOTATION in annotations:
        return str(annotations[SERVER_TYPE_ANNOTATION])
    return SERVER_TYPE_BY_NAME.get(_name(runtime), "")


def _final_protocol(model: Mapping[str, Any], runtime: Manifest) -> str:
    protocol = model_protocol(model)
    if protocol:
        return str(protocol)
    by_type = PROTOCOL_BY_SERVER_TYPE.get(_server_type(runtime))
    if by_type:
        return by_type
    rank = protocol_rank(runtime)
    return next((p for p, r in PROTOCOL_RANK.items() if r == rank), "")


def _eligible(
    runtime: Manifest, model: Mapping[str, Any], protocol: str, multi_model: bool, multi_node: bool
) -> bool:
    spec = _spec(runtime)
    return (
        spec.get("disabled") is not True
        and (spec.get("multiModel") is True) == multi_model
        and supports_model(runtime, model, explicit=False)
        and supports_protocol(runtime, protocol)
        and (spec.get("workerSpec") is not None) == multi_node
    )


def _explicit(isvc: Manifest, model: Mapping[str, Any], runtimes: Sequence[Manifest]) -> Selection:
    wanted = str(model["runtime"])
    namespace = (isvc.get("metadata") or {}).get("namespace", "default")
    found = [
        rt
        for kind in RUNTIME_KINDS
        for rt in runtimes
        if rt.get("kind") == kind
        and _name(rt) == wanted
        and (kind == "ClusterServingRuntime" or _in_namespace(rt, namespace))
    ]
    if not found:
        return Selection(None, f"no ServingRuntime or ClusterServingRuntime named {wanted}")
    runtime = found[0]  # a ServingRuntime in the namespace shadows a ClusterServingRuntime
    kind = str(runtime["kind"])
    protocol = model_protocol(model)
    if _spec(runtime).get("disabled") is True:
        return Selection(None, f"{wanted} is disabled", kind=kind)
    if protocol and not supports_protocol(runtime, protocol):
        return Selection(None, f"{wanted} does not support protocol {protocol}", kind=kind)
    if not supports_model(runtime, model, explicit=True):
        return Selection(None, f"{wanted} does not support {model_label(model)}", kind=kind)
    return Selection(
        wanted, "named in spec.predictor.model.runtime", (wanted,), kind, _final_protocol(model, runtime)
    )


def select_runtime(
    isvc: Manifest, runtimes: Sequence[Manifest], *, multi_model: bool = False, multi_node: bool = False
) -> Selection:
    """The runtime KServe's controller picks for ``isvc`` among ``runtimes`` (ServingRuntimes and
    ClusterServingRuntimes as dicts; other kinds are ignored)."""
    model = _model(isvc)
    if model.get("runtime"):
        return _explicit(isvc, model, runtimes)
    protocol = model_protocol(model) or DEFAULT_PROTOCOL
    namespace = (isvc.get("metadata") or {}).get("namespace", "default")
    fmt_name = str(model["modelFormat"]["name"])
    ordered: list[tuple[str, Manifest]] = []
    for kind in RUNTIME_KINDS:  # namespaced runtimes all come before cluster ones, whatever their priority
        listed = [
            rt
            for rt in _listed(r for r in runtimes if r.get("kind") == kind)
            if (kind == "ClusterServingRuntime" or _in_namespace(rt, namespace))
            and _eligible(rt, model, protocol, multi_model, multi_node)
        ]
        ordered += [(kind, rt) for rt in _by_priority(listed, fmt_name)]
    names = tuple(_name(rt) for _, rt in ordered)
    what = f"{model_label(model)} over {protocol}"
    if not ordered:
        return Selection(None, f"no runtime supports {what}")
    kind, first = ordered[0]
    if len(ordered) == 1:
        reason = f"the only runtime for {what}"
    else:
        shown = ", ".join(f"{_name(rt)} ({_priority_text(rt, fmt_name)})" for _, rt in ordered)
        reason = f"first of {shown} for {what}"
    return Selection(_name(first), reason, names, kind, _final_protocol(model, first))


def _priority_text(runtime: Manifest, format_name: str) -> str:
    p = priority(runtime, format_name)
    return "no priority" if p is None else f"priority {p}"


# --- the ServingRuntime webhook -------------------------------------------------------------


def _same_format(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return str(a.get("name", "")).lower() == str(b.get("name", "")).lower() and a.get("version") == b.get(
        "version"
    )


def _priorities_differ_within(spec: Mapping[str, Any]) -> str | None:
    seen: dict[str, int | None] = {}
    for fmt in spec.get("supportedModelFormats") or []:
        if fmt.get("autoSelect") is not True:
            continue
        name = fmt["name"]
        if name in seen:
            if seen[name] is not None and fmt.get("priority") is not None and seen[name] != fmt["priority"]:
                return f"different priorities assigned for the model format {name}"
        else:
            seen[name] = fmt.get("priority")
    return None


def _priority_clash(new: Mapping[str, Any], existing: Mapping[str, Any]) -> str | None:
    if existing.get("disabled") is True:
        return None
    if (new.get("multiModel") is True) != (existing.get("multiModel") is True):
        return None
    if not set(new.get("protocolVersions") or []) & set(existing.get("protocolVersions") or []):
        return None
    for old in existing.get("supportedModelFormats") or []:
        for fmt in new.get("supportedModelFormats") or []:
            if (
                old.get("autoSelect") is True
                and fmt.get("autoSelect") is True
                and _same_format(old, fmt)
                and old.get("priority") is not None
                and old.get("priority") == fmt.get("priority")
            ):
                return f"same priority assigned for the model format {fmt['name']}"
    return None


def admission_errors(new: Manifest, existing: Sequence[Manifest]) -> list[str]:
    """Why KServe's webhook would refuse to create ``new`` next to ``existing`` runtimes of its kind."""
    kind = new.get("kind")
    plural = "clusterservingruntimes" if kind == "ClusterServingRuntime" else "servingruntimes"
    spec = _spec(new)
    if spec.get("disabled") is True:
        return []
    namespace = (new.get("metadata") or {}).get("namespace")
    others = [
        rt
        for rt in existing
        if rt.get("kind") == kind
        and (kind == "ClusterServingRuntime" or (rt.get("metadata") or {}).get("namespace") == namespace)
    ]
    errors: list[str] = []
    for rt in others:  # KServe checks inside this loop, so a runtime alone is never refused
        inner = _priorities_differ_within(spec)
        if inner:
            return [f"{inner} under the {plural[:-1]} {_name(new)}"]
        if _name(rt) == _name(new):
            continue
        clash = _priority_clash(spec, _spec(rt))
        if clash:
            errors.append(f"{clash} in the {plural} {_name(rt)} and {_name(new)}")
            break  # the webhook denies at the first clash
    return errors


# --- the table for the docs -----------------------------------------------------------------

FORMAT_VERSIONS: tuple[str | None, ...] = (None, "1", "2", "3")
PROTOCOLS: tuple[str | None, ...] = (None, "v1", "v2", "grpc-v2")


def inference_service(
    format_name: str, version: str | None, protocol: str | None, runtime: str | None = None
) -> dict[str, Any]:
    fmt: dict[str, Any] = {"name": format_name}
    if version is not None:
        fmt["version"] = version
    model: dict[str, Any] = {"modelFormat": fmt}
    if protocol is not None:
        model["protocolVersion"] = protocol
    if runtime is not None:
        model["runtime"] = runtime
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "model", "namespace": "default"},
        "spec": {"predictor": {"model": model}},
    }


def selection_table(
    runtimes: Sequence[Manifest],
    format_name: str = "mlflow",
    versions: Sequence[str | None] = FORMAT_VERSIONS,
    protocols: Sequence[str | None] = PROTOCOLS,
) -> dict[tuple[str | None, str | None], Selection]:
    """The selection for every (modelFormat.version, protocolVersion) pair; None means the field is unset."""
    return {
        (v, p): select_runtime(inference_service(format_name, v, p), runtimes)
        for v in versions
        for p in protocols
    }


def render_table(
    table: Mapping[tuple[str | None, str | None], Selection], format_name: str = "mlflow"
) -> str:
    """The table as Markdown: one row per format version, one column per protocolVersion."""
    versions = list(dict.fromkeys(v for v, _ in table))
    protocols = list(dict.fromkeys(p for _, p in table))
    head = ["`modelFormat` \\ `protocolVersion`"] + [f"`{p}`" if p else "unset" for p in protocols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in versions:
        row = [f"`{format_name}`" + (f" `{v}`" if v else " (no version)")]
        for p in protocols:
            chosen = table[(v, p)]
            cell = "none: the InferenceService fails" if chosen.runtime is None else f"**{chosen.runtime}**"
            if chosen.runtime is not None and p is None:
                cell += f" (serves {chosen.protocol})"
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def load_runtimes(*paths: Path | str) -> list[dict[str, Any]]:
    """The ServingRuntimes and ClusterServingRuntimes in these YAML files (other kinds skipped)."""
    found: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if isinstance(doc, dict) and doc.get("kind") in RUNTIME_KINDS:
                found.append(doc)
    return found
