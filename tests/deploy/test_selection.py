"""Which runtime KServe picks for MLflow InferenceServices next to its shipped kserve-mlserver, computed
from the manifests with KServe's rules (modelport.kserve.selection), and the docs that quote it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelport.kserve.selection import (
    admission_errors,
    inference_service,
    load_runtimes,
    render_table,
    select_runtime,
    selection_table,
)
from tests.conftest import REPO
from tests.deploy.kserve_schemas import KSERVE_SPECS

OURS = "modelport-mlflow"
MLSERVER = "kserve-mlserver"
SHIPPED = [KSERVE_SPECS / "runtimes" / f"{name}.yaml" for name in ("kserve-mlserver", "kserve-sklearnserver")]


def cluster() -> list[dict[str, Any]]:
    """KServe's shipped runtimes plus ours, as `kubectl apply` would leave them."""
    return load_runtimes(*SHIPPED, REPO / "deploy" / "kserve" / "servingruntime.yaml")


def ours(runtimes: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [r for r in runtimes if r["metadata"]["name"] == OURS]
    return found


def with_priority(runtimes: list[dict[str, Any]], priority: int) -> list[dict[str, Any]]:
    runtimes = copy.deepcopy(runtimes)
    for fmt in ours(runtimes)["spec"]["supportedModelFormats"]:
        fmt["priority"] = priority
    return runtimes


# (modelFormat.version, protocolVersion) -> runtime; None = field unset. The decision this encodes is
# in docs/decisions-deploy.md: MLServer keeps what it serves today; modelport takes everything else.
EXPECTED = {
    (None, None): OURS,
    (None, "v1"): OURS,
    (None, "v2"): MLSERVER,
    (None, "grpc-v2"): OURS,
    ("1", None): OURS,
    ("1", "v1"): OURS,
    ("1", "v2"): MLSERVER,
    ("1", "grpc-v2"): OURS,
    ("2", None): OURS,
    ("2", "v1"): OURS,
    ("2", "v2"): MLSERVER,
    ("2", "grpc-v2"): OURS,
    ("3", None): OURS,
    ("3", "v1"): OURS,
    ("3", "v2"): OURS,
    ("3", "grpc-v2"): OURS,
}


def test_selection_against_kserve_mlserver_is_as_documented() -> None:
    table = selection_table(cluster())
    assert {k: s.runtime for k, s in table.items()} == EXPECTED
    # KServe fills in the protocol of an InferenceService that set none: the runtime's lowest.
    assert {s.protocol for (_, p), s in table.items() if p is None} == {"v1"}
    assert table[("2", "v2")].candidates == (MLSERVER, OURS)
    assert "no priority" in table[("2", "v2")].reason


def test_without_modelport_v1_and_mlflow_3_have_no_runtime() -> None:
    # What the table replaces: KServe alone serves mlflow only over v2, and never mlflow "3".
    alone = [r for r in cluster() if r["metadata"]["name"] != OURS]
    table = selection_table(alone)
    assert {k for k, s in table.items() if s.runtime == MLSERVER} == {(v, "v2") for v in (None, "1", "2")}
    assert all(s.runtime is None for k, s in table.items() if k[1] != "v2" or k[0] == "3")


def test_priority_two_makes_modelport_the_default_everywhere() -> None:
    runtimes = with_priority(cluster(), 2)
    assert admission_errors(ours(runtimes), runtimes) == []
    assert {s.runtime for s in selection_table(runtimes).values()} == {OURS}


def test_kserve_webhook_admits_ours_and_refuses_priority_one() -> None:
    runtimes = cluster()
    assert admission_errors(ours(runtimes), runtimes) == []
    clash = with_priority(runtimes, 1)
    assert admission_errors(ours(clash), clash) == [
        f"same priority assigned for the model format mlflow in the clusterservingruntimes {MLSERVER} and {OURS}"
    ]
    mixed = copy.deepcopy(runtimes)
    for fmt, p in zip(ours(mixed)["spec"]["supportedModelFormats"], (2, 3, 2), strict=True):
        fmt["priority"] = p
    assert admission_errors(ours(mixed), mixed) == [
        f"different priorities assigned for the model format mlflow under the clusterservingruntime {OURS}"
    ]


@pytest.mark.parametrize("version", [None, "1", "2", "3"])
@pytest.mark.parametrize("protocol", [None, "v1", "v2", "grpc-v2"])
def test_naming_the_runtime_always_gets_modelport(version: str | None, protocol: str | None) -> None:
    chosen = select_runtime(inference_service("mlflow", version, protocol, runtime=OURS), cluster())
    assert chosen.runtime == OURS, chosen.reason
    assert chosen.protocol == (protocol or "v1")


def test_the_example_inference_service_gets_modelport() -> None:
    import yaml

    isvc = yaml.safe_load((REPO / "deploy" / "kserve" / "inferenceservice-example.yaml").read_text())
    assert select_runtime(isvc, cluster()).runtime == OURS
    isvc["spec"]["predictor"]["model"].pop("runtime")
    # Without the runtime line it still lands on modelport, unless it asks for v2 (then MLServer).
    expected = MLSERVER if isvc["spec"]["predictor"]["model"].get("protocolVersion") == "v2" else OURS
    assert select_runtime(isvc, cluster()).runtime == expected


def test_readme_and_decisions_quote_the_computed_table() -> None:
    table = render_table(selection_table(cluster()))
    for doc in ("README.md", "docs/decisions-deploy.md"):
        assert table in (REPO / doc).read_text(), f"{doc}: paste render_table(selection_table(...)) again"


# --- KServe's rules, one at a time ----------------------------------------------------------


def runtime(
    name: str,
    *formats: dict[str, Any],
    protocols: list[str] | None = None,
    kind: str = "ClusterServingRuntime",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"supportedModelFormats": list(formats), **spec}
    if protocols is not None:
        body["protocolVersions"] = protocols
    return {"kind": kind, "metadata": {"name": name, "namespace": "default"}, "spec": body}


def fmt(version: str | None = "2", priority: int | None = None, auto: bool | None = True) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "mlflow"}
    if version is not None:
        out["version"] = version
    if auto is not None:
        out["autoSelect"] = auto
    if priority is not None:
        out["priority"] = priority
    return out


def pick(
    runtimes: list[dict[str, Any]], version: str | None = "2", protocol: str | None = None
) -> str | None:
    return select_runtime(inference_service("mlflow", version, protocol), runtimes).runtime


def test_unset_protocol_is_matched_as_v1() -> None:
    assert pick([runtime("a", fmt(), protocols=["v2"])]) is None
    assert pick([runtime("a", fmt(), protocols=["v2"])], protocol="v2") == "a"


def test_runtime_without_protocol_versions_accepts_any() -> None:
    assert pick([runtime("a", fmt())], protocol="grpc-v1") == "a"


def test_higher_priority_wins_and_missing_priority_sorts_last() -> None:
    rts = [runtime("low", fmt(priority=1)), runtime("none", fmt()), runtime("high", fmt(priority=5))]
    assert select_runtime(inference_service("mlflow", "2", "v1"), rts).candidates == ("high", "low", "none")


def test_without_priorities_lowest_protocol_then_newest_then_name() -> None:
    older = runtime("b-old", fmt(), protocols=["v2", "v1"])
    older["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    newer = runtime("c-new", fmt(), protocols=["v1", "v2"])
    newer["metadata"]["creationTimestamp"] = "2026-06-01T00:00:00Z"
    v2_only = runtime("a-v2", fmt(), protocols=["v2", "grpc-v2"])
    chosen = select_runtime(inference_service("mlflow", "2", "v2"), [v2_only, older, newer])
    assert chosen.candidates == ("c-new", "b-old", "a-v2")


def test_priority_is_read_from_the_first_entry_of_the_format_name() -> None:
    # GetPriority ignores versions: a runtime's first mlflow entry speaks for all of them.
    a = runtime("a", fmt("1", priority=9), fmt("2", priority=1))
    b = runtime("b", fmt("2", priority=5))
    assert pick([b, a], version="2") == "a"


def test_namespaced_runtimes_come_before_cluster_ones_whatever_their_priority() -> None:
    rts = [runtime("cluster", fmt(priority=9)), runtime("local", fmt(), kind="ServingRuntime")]
    assert pick(rts) == "local"
    rts[1]["metadata"]["namespace"] = "elsewhere"
    assert pick(rts) == "cluster"


def test_auto_select_disabled_multi_model_and_workers_are_skipped() -> None:
    assert pick([runtime("a", fmt(auto=None))]) is None
    assert pick([runtime("a", fmt(auto=False))]) is None
    assert pick([runtime("a", fmt(), disabled=True)]) is None
    assert pick([runtime("a", fmt(), multiModel=True)]) is None
    assert pick([runtime("a", fmt(), workerSpec={"containers": []})]) is None


def test_versions_must_match_exactly_but_no_version_matches_any() -> None:
    rts = [runtime("a", fmt("2.1"))]
    assert pick(rts, version="2") is None
    assert pick(rts, version="2.1") == "a"
    assert pick(rts, version=None) == "a"


def test_named_runtime_ignores_auto_select_but_checks_protocol_and_format() -> None:
    rts = [runtime("a", fmt(auto=False), protocols=["v2"])]
    named = select_runtime(inference_service("mlflow", "2", None, runtime="a"), rts)
    assert (named.runtime, named.protocol) == ("a", "v2")
    refused = select_runtime(inference_service("mlflow", "2", "v1", runtime="a"), rts)
    assert refused.runtime is None and "protocol v1" in refused.reason
    assert select_runtime(inference_service("mlflow", "3", "v2", runtime="a"), rts).runtime is None
    assert select_runtime(inference_service("mlflow", "2", None, runtime="zzz"), rts).runtime is None


def test_mlserver_named_without_protocol_gets_v2() -> None:
    # SetMlServerDefaults, keyed on the server-type annotation.
    chosen = select_runtime(inference_service("mlflow", "2", None, runtime=MLSERVER), cluster())
    assert (chosen.runtime, chosen.protocol) == (MLSERVER, "v2")


def test_the_multi_model_runtime_changes_no_automatic_selection() -> None:
    """multiModel: true keeps it out of KServe's automatic choice (the controller asks for
    single-model runtimes); an InferenceService gets it by naming it, and the webhook admits it."""
    multi = load_runtimes(REPO / "deploy" / "kserve" / "servingruntime-multimodel.yaml")
    runtimes = [*cluster(), *multi]
    assert {k: s.runtime for k, s in selection_table(runtimes).items()} == EXPECTED
    assert admission_errors(multi[0], runtimes) == []
    for protocol in (None, "v2"):
        named = inference_service("mlflow", "2", protocol, runtime="modelport-mlflow-multimodel")
        assert select_runtime(named, runtimes).runtime == "modelport-mlflow-multimodel"
