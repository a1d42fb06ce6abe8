"""Loopback storage servers' plumbing shared by the storage tests and their fixtures.

A module of its own (not conftest.py): test modules import it by a name no other folder uses.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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


def start_process(
    cmd: list[str], url: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    fh = open(log, "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(url, proc)
    except BaseException:
        proc.kill()
        raise
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
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
