"""Servers and models for the pod tests (marker ``pods``): moto and ``mlflow server`` on loopback,
real MLflow models saved here, uploaded the way a user would. Started only when a test asks."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.storage.storage_servers import AWS, Moto, free_port, start_process, stop_process

CONSTRAINTS = REPO / "deploy" / "constraints.txt"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Pod tests run only when asked for (`-m pods`, as `make pod-test` does): they use host ports
    8080/8081/9000 and fixed pod names, so two runs at once, or a plain `pytest`, must not start them."""
    if "pods" in (config.getoption("markexpr") or "").split():
        return
    skip = pytest.mark.skip(reason="pod tests run with -m pods: `make pod-test`")
    for item in items:
        if item.get_closest_marker("pods"):
            item.add_marker(skip)


def image_pins(*names: str) -> list[str]:
    """Requirements the image satisfies exactly: a model saved with them runs in the image's own
    interpreter (`--env auto` finds no drift), so a pod needs no package index."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return [f"{n}=={pins[n]}" for n in names]


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = start_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url, log)
    yield Moto(url)
    stop_process(proc)


@pytest.fixture(scope="session")
def mlflow_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` with a SQLite registry and proxied artifacts on moto."""
    moto.client().create_bucket(Bucket="mlflow-artifacts")
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **AWS, "MLFLOW_S3_ENDPOINT_URL": moto.url}
    env.pop("MLFLOW_TRACKING_URI", None)
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    cmd = [mlflow_bin, "server", "--backend-store-uri", f"sqlite:///{work}/mlflow.db"]
    cmd += ["--artifacts-destination", "s3://mlflow-artifacts/proxied", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1"]
    proc = start_process(cmd, f"{url}/health", work / "mlflow.log", env=env)
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def iris_rows():  # type: ignore[no-untyped-def]
    import pandas as pd
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    frame = data.data
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return frame, data.target, pd.DataFrame(frame.to_numpy()[::15], columns=frame.columns)


@pytest.fixture(scope="session")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory, iris_rows) -> Path:  # type: ignore[no-untyped-def]
    """An sklearn classifier on iris's four named double columns, plus an empty file of its own."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame, target, _ = iris_rows
    clf = LogisticRegression(max_iter=500).fit(frame, target)
    path = tmp_path_factory.mktemp("sk") / "model"
    mlflow.sklearn.save_model(
        clf,
        path,
        signature=infer_signature(frame, clf.predict(frame)),
        pip_requirements=image_pins("mlflow", "scikit-learn", "numpy", "pandas", "scipy", "cloudpickle"),
        serialization_format="cloudpickle",
    )
    (path / "extra").mkdir()
    (path / "extra" / "empty.txt").write_bytes(b"")
    return path


@pytest.fixture(scope="session")
def pytorch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLflow pytorch model: data/model.pth (in a folder) plus a zero-byte code/.../__init__.py."""
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    base = tmp_path_factory.mktemp("pt")
    code = base / "code_src" / "mymodule"
    code.mkdir(parents=True)
    (code / "__init__.py").write_bytes(b"")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    net.eval()
    example = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(example)).numpy()
    path = base / "model"
    mlflow.pytorch.save_model(
        net,
        path,
        signature=infer_signature(example, out),
        pip_requirements=[*image_pins("mlflow", "numpy"), "torch==2.13.0"],
        code_paths=[str(code)],
        serialization_format="pickle",
    )
    assert (path / "data" / "model.pth").is_file()
    return path


def tree(root: Path) -> dict[str, int]:
    """Every file under root, by relative path, with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def upload(moto: Moto, bucket: str, prefix: str, root: Path) -> None:
    client = moto.client()
    for rel in tree(root):
        client.upload_file(str(root / rel), bucket, f"{prefix}/{rel}")
