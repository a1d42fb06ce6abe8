"""Metrics: fetch and environment figures recorded in-process; the whole /metrics page of a real server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelport.errors import StorageError
from modelport.metrics import REGISTRY
from modelport.settings import build_settings
from modelport.storage import fetch, resolve_model
from modelport.storage.config import StorageSettings
from tests.conftest import EXAMPLE_IRIS, free_port, start_server

NO_ENV = StorageSettings.from_environ({})  # no proxies, no credentials: loopback only


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FetchFigures:
    """FETCH_BYTES / FETCH_SECONDS for one scheme, read before and after an action."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.before = self._read()

    def _read(self) -> tuple[float, float, float]:
        return (
            sample("modelport_fetch_bytes_total", scheme=self.scheme),
            sample("modelport_fetch_duration_seconds_count", scheme=self.scheme),
            sample("modelport_fetch_duration_seconds_sum", scheme=self.scheme),
        )

    def delta(self) -> tuple[float, float, float]:
        now = self._read()
        return (now[0] - self.before[0], now[1] - self.before[1], now[2] - self.before[2])


def make_tree(root: Path) -> int:
    files = {"MLmodel": b"flavors: {}\n", "data/model.bin": os.urandom(200_000), "code/__init__.py": b""}
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return sum(len(b) for b in files.values())


def test_fetch_from_a_local_folder_counts_its_bytes_and_seconds(tmp_path: Path) -> None:
    size = make_tree(tmp_path / "src")
    figures = FetchFigures("file")
    fetch(str(tmp_path / "src"), tmp_path / "dest", NO_ENV)
    moved, count, seconds = figures.delta()
    assert moved == size and count == 1 and seconds >= 0


def test_resolving_a_local_folder_records_seconds_and_no_bytes(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    figures = FetchFigures("file")
    assert (
        resolve_model(f"file://{tmp_path / 'src'}", NO_ENV, tmp_path / "cache")
        == (tmp_path / "src").resolve()
    )
    moved, count, _ = figures.delta()
    assert moved == 0 and count == 1


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """``python -m http.server`` on loopback, serving a folder the tests write into."""
    root = tmp_path_factory.mktemp("www")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("python -m http.server did not start") from None
                time.sleep(0.1)
        yield root, url
    finally:
        proc.terminate()
        proc.wait(10)


def test_fetch_over_http_counts_its_bytes_and_seconds(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_root
    (root / "model.bin").write_bytes(os.urandom(300_000))
    figures = FetchFigures("http")
    fetch(f"{url}/model.bin", tmp_path / "dest", NO_ENV)
    moved, count, seconds = figures.delta()
    assert moved == 300_000 and count == 1 and seconds > 0


def test_a_cache_hit_records_seconds_and_no_bytes(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_root
    (root / "cached.bin").write_bytes(os.urandom(100_000))
    cold = FetchFigures("http")
    first = resolve_model(f"{url}/cached.bin", NO_ENV, tmp_path / "cache")
    assert cold.delta()[:2] == (100_000, 1)
    warm = FetchFigures("http")
    assert resolve_model(f"{url}/cached.bin", NO_ENV, tmp_path / "cache") == first
    moved, count, _ = warm.delta()
    assert moved == 0 and count == 1


def test_a_failed_fetch_records_no_duration(http_root: tuple[Path, str], tmp_path: Path) -> None:
    _, url = http_root
    figures = FetchFigures("http")
    with pytest.raises(StorageError):
        fetch(f"{url}/missing.bin", tmp_path / "dest", NO_ENV)
    assert figures.delta()[:2] == (0, 0)


def _packed_env(tmp_path: Path) -> Path:
    """A venv-layout tarball: a bare venv whose .pth borrows the test venv's site-packages (mlflow)."""
    import site
    import sysconfig

    env = tmp_path / "packed-env"
    base = Path(sys._base_executable).resolve()  # type: ignore[attr-defined]
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(env)], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(env)})["purelib"])
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    out = tmp_path / "environment.tar.gz"
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for p in sorted(env.iterdir()):
            tar.add(p, arcname=p.name)
    return out


@pytest.mark.slow
def test_unpacking_a_tarball_environment_is_timed_and_a_cached_one_is_not(tmp_path: Path) -> None:
    from modelport.envs import resolve_interpreter

    model = tmp_path / "iris"
    shutil.copytree(EXAMPLE_IRIS, model)
    shutil.move(_packed_env(tmp_path), model / "environment.tar.gz")
    settings = build_settings({"cache_dir": str(tmp_path / "cache"), "env": "tarball"}, dict(os.environ))
    name = "modelport_environment_build_duration_seconds"
    before = sample(f"{name}_count", kind="tarball"), sample(f"{name}_sum", kind="tarball")
    built = resolve_interpreter(model, settings)
    assert built.build_s > 0
    assert sample(f"{name}_count", kind="tarball") == before[0] + 1
    assert sample(f"{name}_sum", kind="tarball") - before[1] == pytest.approx(built.build_s)
    cached = resolve_interpreter(model, settings)
    assert cached.build_s == 0 and "cached" in cached.reason
    assert sample(f"{name}_count", kind="tarball") == before[0] + 1


# ---------------------------------------------------------------------------------------------
# The real server. Both depend on the HTTP front being replaced (the /metrics route, request
# counting, request ids, --log-format/--access-log wiring) and on the workers' metrics.

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]
V2_BODY = {
    "inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [v]} for n, v in zip(FEATURES, ROW)]
}
V1_BODY = {"instances": [dict(zip(FEATURES, ROW))]}
SCORING_BODY = {"dataframe_split": {"columns": FEATURES, "data": [ROW]}}


def _drive(base: str, headers: dict[str, str] | None = None) -> None:
    with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
        for _ in range(3):
            assert client.post("/v2/models/iris/infer", json=V2_BODY).status_code == 200
            assert client.post("/v1/models/iris:predict", json=V1_BODY).status_code == 200
            assert client.post("/invocations", json=SCORING_BODY).status_code == 200
        bad = client.post(
            "/v2/models/iris/infer", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad.status_code == 400


@pytest.mark.slow
def test_metrics_page_of_a_real_server(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server = start_server(EXAMPLE_IRIS, tmp=tmp_path)
    try:
        _drive(server.base)
        resp = httpx.get(f"{server.base}/metrics", timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    finally:
        server.stop()
    requests = [s for s in families["modelport_requests"].samples if s.name == "modelport_requests_total"]
    seen = {(s.labels["protocol"], s.labels["status"]) for s in requests if s.labels.get("model") == "iris"}
    assert {("v2", "200"), ("v1", "200"), ("mlflow", "200"), ("v2", "400")} <= seen, seen
    for name in (
        "modelport_request_duration_seconds",
        "modelport_predict_duration_seconds",
        "modelport_batch_size",
        "modelport_model_load_duration_seconds",
        "modelport_fetch_duration_seconds",
    ):
        counts = [s.value for s in families[name].samples if s.name == f"{name}_count"]
        assert counts and sum(counts) > 0, name
    ready = [s for s in families["modelport_workers_ready"].samples if s.labels.get("model") == "iris"]
    assert ready and ready[0].value >= 1


@pytest.mark.slow
def test_json_logs_and_access_lines_of_a_real_server(tmp_path: Path) -> None:
    server = start_server(EXAMPLE_IRIS, "--log-format", "json", "--access-log", tmp=tmp_path)
    rid = "client-chosen-id-42"
    try:
        resp = httpx.post(
            f"{server.base}/v2/models/iris/infer?api_key=s3cr3t", json=V2_BODY, headers={"x-request-id": rid}
        )
        assert resp.status_code == 200 and resp.headers.get("x-request-id") == rid
    finally:
        server.stop()
    # The worker's own stderr (mlflow's warnings) is not ours to format; modelport's lines are.
    ours = [ln for ln in server.log().splitlines() if ln.startswith("{")]
    parsed = [json.loads(ln) for ln in ours]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in parsed)
    assert any(r["logger"].startswith("modelport") and "ready" in r["message"] for r in parsed)
    text_line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ (modelport|uvicorn)")
    stray = [ln for ln in server.log().splitlines() if text_line.match(ln)]
    assert not stray, stray  # no text-format line from modelport's loggers
    access = [r for r in parsed if r["logger"] == "modelport.access" and r.get("request_id") == rid]
    assert len(access) == 1, parsed
    line = access[0]
    assert (line["method"], line["path"], line["status"]) == ("POST", "/v2/models/iris/infer", 200)
    assert line["seconds"] >= 0 and line["client"].startswith("127.0.0.1")
    assert "s3cr3t" not in server.log()
