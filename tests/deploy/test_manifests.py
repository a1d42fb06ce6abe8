"""deploy/kserve: the KServe manifests, checked offline against KServe's schemas and modelport itself.

No API server: the YAML is validated with schemas cut from KServe's CRDs, its commands are
parsed by modelport's own CLI, and the slow tests run them for real on loopback.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from modelport.cli import make_parser
from modelport.protocols import rest, v2
from modelport.settings import Settings, build_settings
from modelport.storage.registry import BACKENDS, LOCAL_SCHEMES, scheme_of
from tests.conftest import EXAMPLE_IRIS, REPO, free_port
from tests.deploy.kserve_schemas import CRD_FILES, SCHEMAS, crd_dir, crd_json_schema

DEPLOY = REPO / "deploy"
ISVC_NAME = "iris"


def load_manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((str(path.relative_to(REPO)), doc))
    return docs


MANIFESTS = load_manifests()


def one(kind: str, multi_model: bool = False) -> dict[str, Any]:
    """The one manifest of ``kind`` (runtimes: the single-model one, or with ``multi_model`` the
    multi-model one of deploy/kserve/servingruntime-multimodel.yaml)."""
    found = [
        doc
        for _, doc in MANIFESTS
        if doc.get("kind") == kind and ((doc.get("spec") or {}).get("multiModel") is True) == multi_model
    ]
    assert len(found) == 1, (
        f"expected one {kind} (multiModel {multi_model}) under deploy/, found {len(found)}"
    )
    return found[0]


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = SCHEMAS.get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if schema is None:
        return [f"unknown apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')}"]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)
    ]


def render(container: dict[str, Any], name: str) -> dict[str, Any]:
    """KServe runs the container's JSON through Go's text/template with the InferenceService's metadata."""
    text = json.dumps(container)
    placeholders = set(re.findall(r"\{\{.*?\}\}", text))
    assert placeholders <= {"{{.Name}}"}, f"template fields other than {{{{.Name}}}}: {placeholders}"
    return json.loads(text.replace("{{.Name}}", name))


def serve_settings(args: list[str]) -> Settings:
    # The same steps as modelport.cli.run, short of serving.
    flags = vars(make_parser().parse_args(args))
    flags["model_uri"] = flags.get("model_uri") or flags.get("model_dir")
    return build_settings(flags, {})


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in container.items() if k.endswith("Probe")}


# --- every manifest against KServe's schemas -------------------------------------------------


def test_deploy_holds_the_kserve_resources() -> None:
    kinds = sorted(doc["kind"] for _, doc in MANIFESTS)
    assert kinds == ["ClusterServingRuntime"] * 2 + ["ClusterStorageContainer", "InferenceService"]
    assert one("ClusterServingRuntime", multi_model=True)["metadata"]["name"] == "modelport-mlflow-multimodel"


@pytest.mark.parametrize("where,doc", MANIFESTS, ids=[f"{w}:{d.get('kind')}" for w, d in MANIFESTS])
def test_manifest_matches_kserve_schema(where: str, doc: dict[str, Any]) -> None:
    assert schema_errors(doc) == [], where


@pytest.mark.parametrize(
    "kind,mutate,expected",
    [
        (
            "ClusterServingRuntime",
            lambda d: d["spec"].update(supportedModelFormat=[]),
            "supportedModelFormat",
        ),
        ("ClusterServingRuntime", lambda d: d["spec"]["containers"][0].pop("name"), "'name' is a required"),
        ("ClusterServingRuntime", lambda d: d["spec"].update(protocolVersions=["v3"]), "'v3' is not one of"),
        ("ClusterStorageContainer", lambda d: d["spec"].pop("supportedUriFormats"), "supportedUriFormats"),
        ("ClusterStorageContainer", lambda d: d["spec"].update(workloadType="init"), "'init' is not one of"),
        (
            "ClusterStorageContainer",
            lambda d: d["spec"]["container"].update(arg=["x"]),
            "'arg' was unexpected",
        ),
        (
            "InferenceService",
            lambda d: d["spec"]["predictor"]["model"].update(storageURI="s3://b"),
            "storageURI",
        ),
        ("InferenceService", lambda d: d.update(apiVersion="serving.kserve.io/v1alpha1"), "unknown"),
    ],
)
def test_schema_check_catches_mistakes(kind: str, mutate: Any, expected: str) -> None:
    doc = copy.deepcopy(one(kind))
    mutate(doc)
    errors = schema_errors(doc)
    assert any(expected in e for e in errors), errors


def _walk(mine: dict[str, Any], crd: dict[str, Any], path: str, problems: list[str]) -> None:
    for branch in mine.get("oneOf", []):
        _walk(branch, crd, path, problems)
    if "type" in mine and mine["type"] != crd.get("type"):
        problems.append(f"{path}: type {mine['type']} here, {crd.get('type')} in the CRD")
    if "anyOf" in mine and not crd.get("x-kubernetes-int-or-string"):
        problems.append(f"{path}: int-or-string here, not in the CRD")
    missing = set(crd.get("required", [])) - set(mine.get("required", []))
    if missing and "properties" in mine:
        problems.append(f"{path}: the CRD also requires {sorted(missing)}")
    if "properties" in mine and "properties" in crd:
        for name, sub in mine["properties"].items():
            if name not in crd["properties"]:
                problems.append(f"{path}.{name}: not in the CRD")
            else:
                _walk(sub, crd["properties"][name], f"{path}.{name}", problems)
    if "items" in mine and "items" in crd:
        _walk(mine["items"], crd["items"], f"{path}[]", problems)
    if isinstance(mine.get("additionalProperties"), dict) and isinstance(
        crd.get("additionalProperties"), dict
    ):
        _walk(mine["additionalProperties"], crd["additionalProperties"], f"{path}{{}}", problems)


def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    (crd_path,) = list(crd_dir().rglob(CRD_FILES[kind]))
    crd = yaml.safe_load(crd_path.read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == api_version.split("/")[1]]
    return served["schema"]["openAPIV3Schema"]


def test_schemas_match_kserve_crds() -> None:
    """Every field the cut-down schemas allow exists in KServe's CRDs, with the same type."""
    problems: list[str] = []
    for (api_version, kind), schema in SCHEMAS.items():
        top = crd_schema(api_version, kind)
        for key in ("spec", "disabled"):
            if key in schema["properties"]:
                _walk(schema["properties"][key], top["properties"][key], f"{kind}.{key}", problems)
    assert problems == []


@pytest.mark.parametrize("where,doc", MANIFESTS, ids=[f"{w}:{d.get('kind')}" for w, d in MANIFESTS])
def test_manifest_matches_real_kserve_crd(where: str, doc: dict[str, Any]) -> None:
    schema = crd_json_schema(crd_schema(doc["apiVersion"], doc["kind"]))
    errors = jsonschema.Draft202012Validator(schema).iter_errors(doc)
    assert [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == [], where


# --- the serving runtime --------------------------------------------------------------------


def test_real_crd_check_catches_mistakes() -> None:
    doc = copy.deepcopy(one("ClusterServingRuntime"))
    doc["spec"]["supportedModelFormats"][0]["priority"] = 0  # the CRD says minimum 1
    doc["spec"]["containers"][0]["securityContext"]["seccompProfile"]["typo"] = "x"
    schema = crd_json_schema(crd_schema(doc["apiVersion"], doc["kind"]))
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
    assert any("less than the minimum of 1" in e for e in errors), errors
    assert any("'typo' was unexpected" in e for e in errors), errors


def test_runtime_declares_mlflow_formats_and_protocols() -> None:
    runtime = one("ClusterServingRuntime")
    assert runtime["metadata"]["name"] == "modelport-mlflow"
    formats = runtime["spec"]["supportedModelFormats"]
    # MLflow 1.x models are served too; "3" is the format kserve-mlserver does not declare.
    assert [(f["name"], f["version"], f["autoSelect"]) for f in formats] == [
        ("mlflow", "1", True),
        ("mlflow", "2", True),
        ("mlflow", "3", True),
    ]
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    # Deliberately no priority: see docs/decisions-deploy.md and tests/deploy/test_selection.py.
    assert {f.get("priority") for f in formats} == {None}


def test_runtime_annotations_point_prometheus_at_the_metrics_route() -> None:
    runtime = one("ClusterServingRuntime")
    annotations = runtime["spec"]["annotations"]
    container = render(runtime["spec"]["containers"][0], ISVC_NAME)
    assert int(annotations["prometheus.kserve.io/port"]) == serve_settings(container["args"]).serve.http_port
    assert annotations["prometheus.kserve.io/path"] == "/metrics"
    _, params = rest.route("GET", annotations["prometheus.kserve.io/path"])  # raises when not routed
    assert params == {}


def test_runtime_and_storage_container_are_confined() -> None:
    for container in (
        one("ClusterServingRuntime")["spec"]["containers"][0],
        one("ClusterStorageContainer")["spec"]["container"],
    ):
        ctx = container["securityContext"]
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        assert ctx["runAsNonRoot"] is True and ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]


def test_runtime_requests_room_for_an_environment_build() -> None:
    resources = one("ClusterServingRuntime")["spec"]["containers"][0]["resources"]
    # --env auto may build a ~0.6 GB environment inside the container (docs/decisions-deploy.md).
    assert resources["requests"]["ephemeral-storage"] == "1Gi"
    # No limit: a bigger (torch) environment must not get the pod evicted in a loop.
    assert "ephemeral-storage" not in resources.get("limits", {})


def test_runtime_ports_stay_valid_for_knative() -> None:
    """Knative refuses a container with more than one port; KServe merges the InferenceService's
    ports into the runtime's by containerPort. So the runtime declares none (as KServe's own do),
    and a grpc-v2 InferenceService declares the one h2c port."""
    container = one("ClusterServingRuntime")["spec"]["containers"][0]
    assert "ports" not in container
    args = serve_settings(render(container, ISVC_NAME)["args"]).serve
    assert (args.http_port, args.grpc_port) == (8080, 8081)
    grpc_port = {"name": "h2c", "containerPort": args.grpc_port, "protocol": "TCP"}
    merged = {p["containerPort"]: p for p in [*container.get("ports", []), grpc_port]}
    assert list(merged.values()) == [grpc_port]


def test_runtime_container_is_what_kserve_looks_for() -> None:
    (container,) = one("ClusterServingRuntime")["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert "command" not in container, "the image's ENTRYPOINT (modelport) must stay"
    # KServe's webhook refuses runtimes that set PYTHONPATH.
    assert "PYTHONPATH" not in {e["name"] for e in container.get("env", [])}
    assert container["securityContext"]["runAsNonRoot"] is True


def test_runtime_args_parse_with_modelport_cli() -> None:
    container = render(one("ClusterServingRuntime")["spec"]["containers"][0], ISVC_NAME)
    assert container["args"][0] == "serve"
    settings = serve_settings(container["args"])
    assert settings.serve.model_name == ISVC_NAME
    assert settings.serve.model_uri == "/mnt/models"
    assert settings.serve.http_port == 8080


def test_runtime_args_with_an_unknown_flag_would_fail() -> None:
    with pytest.raises(SystemExit):
        make_parser().parse_args(["serve", "--model-format=mlflow"])


def test_probes_hit_routes_the_server_answers() -> None:
    container = render(one("ClusterServingRuntime")["spec"]["containers"][0], ISVC_NAME)
    port = serve_settings(container["args"]).serve.http_port
    found = probes(container)
    assert set(found) == {"startupProbe", "livenessProbe", "readinessProbe"}
    expected = {"startupProbe": v2.live, "livenessProbe": v2.live, "readinessProbe": v2.ready}
    for kind, probe in found.items():
        assert probe["httpGet"]["port"] == port, kind
        handler, params = rest.route("GET", probe["httpGet"]["path"])
        assert handler is expected[kind], kind
        assert params == {}


def test_route_check_would_catch_a_wrong_path() -> None:
    with pytest.raises(Exception, match="no endpoint"):
        rest.route("GET", "/v2/health/readyz")


def test_startup_probe_allows_a_slow_start() -> None:
    startup = one("ClusterServingRuntime")["spec"]["containers"][0]["startupProbe"]
    # Environments built with uv at start-up take minutes; liveness must not kill them first.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


# --- the multi-model runtime (TrainedModels loaded by KServe's agent) ------------------------


def test_multi_model_runtime_validates_against_the_real_crd() -> None:
    doc = one("ClusterServingRuntime", multi_model=True)
    schema = crd_json_schema(crd_schema(doc["apiVersion"], doc["kind"]))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(doc)) == []
    assert schema_errors(doc) == []
    broken = copy.deepcopy(doc)
    broken["spec"]["multiModel"] = "yes"
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(broken)]
    assert any("is not of type 'boolean'" in e for e in errors), errors


def test_multi_model_runtime_serves_an_empty_repository_at_mnt_models() -> None:
    runtime = one("ClusterServingRuntime", multi_model=True)
    assert runtime["spec"]["multiModel"] is True
    (container,) = runtime["spec"]["containers"]
    # No {{.Name}}: the models are named by their TrainedModels, not by the InferenceService.
    assert "{{" not in json.dumps(container)
    assert container["name"] == "kserve-container" and "command" not in container
    serve = serve_settings(container["args"]).serve
    # /mnt/models is where KServe's webhook mounts the agent's model-dir emptyDir.
    assert serve.model_repository == "/mnt/models"
    assert not serve.model_uri and not serve.model_uris
    assert serve.load_models_at_startup is True
    assert (serve.http_port, serve.grpc_port) == (8080, 8081)  # the agent calls localhost:8080
    single = one("ClusterServingRuntime")["spec"]
    assert runtime["spec"]["supportedModelFormats"] == [
        {k: v for k, v in f.items() if k != "autoSelect"} for f in single["supportedModelFormats"]
    ]
    assert runtime["spec"]["annotations"] == single["annotations"]
    assert container["securityContext"] == single["containers"][0]["securityContext"]
    assert probes(container) == probes(single["containers"][0])


# --- the storage container ------------------------------------------------------------------


def test_storage_container_follows_kserve_init_container_contract() -> None:
    spec = one("ClusterStorageContainer")["spec"]
    container = spec["container"]
    assert container["name"] == "storage-initializer"
    # KServe's strategic merge would replace its [SRC, DEST] args with ours.
    assert "args" not in container
    assert container["command"] == ["modelport", "storage-initializer"]
    assert spec["workloadType"] == "initContainer"
    assert spec["supportsMultiModelDownload"] is True
    args = make_parser().parse_args(
        [*container["command"][1:], "s3://b/m", "/mnt/models", "models:/iris/1", "/mnt/models/extra"]
    )
    assert args.command == "storage-initializer"
    assert args.pairs == ["s3://b/m", "/mnt/models", "models:/iris/1", "/mnt/models/extra"]


def test_every_claimed_uri_prefix_is_a_modelport_backend() -> None:
    formats = one("ClusterStorageContainer")["spec"]["supportedUriFormats"]
    prefixes = [f["prefix"] for f in formats]
    for prefix in prefixes:
        scheme = scheme_of(prefix + "bucket/model")
        assert scheme in BACKENDS and scheme not in LOCAL_SCHEMES, prefix
    # KServe mounts PVCs itself; a storage container never sees pvc://.
    assert not any(p.startswith("pvc") for p in prefixes)
    for wanted in ("s3://", "gs://", "https://", "http://", "models:/", "runs:/", "mlflow-artifacts:/"):
        assert wanted in prefixes


# --- the example InferenceService -----------------------------------------------------------


def test_example_uses_the_runtime_and_storage_container() -> None:
    isvc = one("InferenceService")
    runtime = one("ClusterServingRuntime")
    storage = one("ClusterStorageContainer")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert predictor["storageContainerName"] == storage["metadata"]["name"]
    prefixes = [f["prefix"] for f in storage["spec"]["supportedUriFormats"]]
    assert any(model["storageUri"].startswith(p) for p in prefixes)
    assert isvc["metadata"]["name"] == ISVC_NAME


# --- the commands, run for real --------------------------------------------------------------


@contextlib.contextmanager
def runtime_args_server(
    container: dict[str, Any], models: Path, tmp: Path, grpc_port: int = 0, timeout: float = 180
) -> Iterator[tuple[str, Path]]:
    """modelport started with a runtime container's own args and env, /mnt/models -> ``models``,
    on free ports; yields its base URL, once ready, and its log."""
    port = free_port()
    args = [
        a.replace("/mnt/models", str(models))
        .replace("--http_port=8080", f"--http_port={port}")
        .replace("--grpc_port=8081", f"--grpc_port={grpc_port}")
        for a in container["args"]
    ]
    env = {
        **os.environ,
        **{e["name"]: e["value"] for e in container.get("env", [])},
        "MODELPORT_HOST": "127.0.0.1",
        "MODELPORT_ENV": "local",
        "MODELPORT_CACHE_DIR": str(tmp / "cache"),
    }
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelport", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"not ready in {timeout:.0f} s:\n{log.read_text()}"
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def runtime_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """modelport started with the runtime's own args: /mnt/models -> the bundled iris model, free port."""
    tmp = tmp_path_factory.mktemp("runtime")
    container = render(one("ClusterServingRuntime")["spec"]["containers"][0], ISVC_NAME)
    with runtime_args_server(container, EXAMPLE_IRIS, tmp, grpc_port=free_port()) as (base, _):
        yield base, container


@pytest.mark.slow
def test_runtime_probes_answer_200_on_a_real_server(runtime_server: tuple[str, dict[str, Any]]) -> None:
    base, container = runtime_server
    for kind, probe in probes(container).items():
        response = httpx.get(base + probe["httpGet"]["path"], timeout=5)
        assert response.status_code == 200, (kind, response.text)
    # {{.Name}} became the model's name, as clients of the InferenceService will call it.
    assert httpx.get(f"{base}/v2/models/{ISVC_NAME}/ready", timeout=5).status_code == 200


@pytest.mark.slow
def test_prometheus_annotations_scrape_a_real_server(runtime_server: tuple[str, dict[str, Any]]) -> None:
    base, _ = runtime_server
    path = one("ClusterServingRuntime")["spec"]["annotations"]["prometheus.kserve.io/path"]
    response = httpx.get(base + path, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "modelport_workers_ready" in response.text


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_storage_container_command_fetches_pairs(tmp_path: Path) -> None:
    command = one("ClusterStorageContainer")["spec"]["container"]["command"]
    assert command[0] == "modelport"
    mnt = tmp_path / "mnt" / "models"
    mnt.mkdir(parents=True)  # KServe mounts an emptyDir here before the init container starts
    argv = [sys.executable, "-m", "modelport", *command[1:], EXAMPLE_IRIS.as_uri(), str(mnt)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert tree(mnt) == tree(EXAMPLE_IRIS)


@pytest.mark.slow
def test_storage_container_command_fails_cleanly(tmp_path: Path) -> None:
    command = one("ClusterStorageContainer")["spec"]["container"]["command"]
    missing = tmp_path / "no-such-model"
    dest = tmp_path / "dest"
    argv = [sys.executable, "-m", "modelport", *command[1:], missing.as_uri(), str(dest)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode != 0
    assert "no-such-model" in done.stderr and "Traceback" not in done.stderr
    assert not dest.exists()


@pytest.mark.slow
def test_multi_model_runtime_args_on_a_real_server_load_what_the_agent_downloads(tmp_path: Path) -> None:
    """The runtime's own args, /mnt/models -> an empty folder: ready at once with no model; a model
    folder copied in (as the agent downloads it) then POST .../load with {} serves it; unload stops it."""
    import shutil

    container = one("ClusterServingRuntime", multi_model=True)["spec"]["containers"][0]
    mnt = tmp_path / "mnt" / "models"
    mnt.mkdir(parents=True)
    with runtime_args_server(container, mnt, tmp_path, timeout=120) as (base, log):
        for kind, probe in probes(container).items():
            assert httpx.get(base + probe["httpGet"]["path"], timeout=5).status_code == 200, kind
        assert httpx.post(f"{base}/v2/repository/index", timeout=5).json() == []
        shutil.copytree(EXAMPLE_IRIS, mnt / "iris")
        (mnt / "iris" / "SUCCESS.0123abcd").write_text("{}")  # the agent's marker file, beside MLmodel
        loaded = httpx.post(f"{base}/v2/repository/models/iris/load", content=b"{}", timeout=120)
        assert loaded.status_code == 200, (loaded.text, log.read_text()[-3000:])
        index = httpx.post(f"{base}/v2/repository/index", timeout=5).json()
        assert index == [{"name": "iris", "version": "", "state": "READY", "reason": ""}]
        assert httpx.get(f"{base}/v2/models/iris/ready", timeout=5).status_code == 200
        shutil.rmtree(mnt / "iris")  # the agent deletes the folder first, then unloads
        assert (
            httpx.post(f"{base}/v2/repository/models/iris/unload", content=b"{}", timeout=60).status_code
            == 200
        )
        assert httpx.get(f"{base}/v2/models/iris/ready", timeout=5).status_code != 200
