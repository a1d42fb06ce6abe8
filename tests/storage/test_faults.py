"""Faults a real server cannot be made to produce, injected by a loopback proxy in front of moto and
``http.server``: each fetch ends in a byte-identical tree or in an error with DEST untouched."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest
from faultproxy import Fault, FaultProxy
from storage_servers import Moto
from storage_support import settings_for, tree

from modelport.errors import StorageError
from modelport.storage import fetch

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def bucket(moto: Moto) -> dict[str, bytes]:
    client = moto.client()
    client.create_bucket(Bucket="faults")
    files = {
        "m/MLmodel": b"flavors: {}\n",
        "m/data/weights.bin": os.urandom(6 * MIB + 3),
        "m/code/__init__.py": b"",
    }
    for key, body in files.items():
        client.put_object(Bucket="faults", Key=key, Body=body)
    return {k[len("m/") :]: v for k, v in files.items()}


def _dest_with_old_model(tmp_path: Path) -> Path:
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "MLmodel").write_text("old model")
    return dest


@pytest.mark.parametrize("min_part", [64 * MIB, 2 * MIB], ids=["whole-file", "ranged"])
def test_connection_dropped_mid_file_resumes(
    moto: Moto, s3_proxy: FaultProxy, bucket: dict[str, bytes], tmp_path: Path, min_part: int
) -> None:
    s3_proxy.add(Fault("weights.bin", "drop", after=700_000, times=2))
    settings = settings_for(moto.env(s3_proxy.url), min_part_size=min_part)
    dest = _dest_with_old_model(tmp_path)
    fetch("s3://faults/m", dest, settings)
    assert tree(dest) == bucket
    gets = s3_proxy.state.gets("weights.bin")
    # The dropped reads were resumed from where they broke off, not restarted.
    assert any(g.range and not g.range.startswith("bytes=0-") for g in gets)


def test_server_errors_then_recovery(
    moto: Moto, s3_proxy: FaultProxy, bucket: dict[str, bytes], tmp_path: Path
) -> None:
    s3_proxy.add(Fault("weights.bin", "status", status=500, times=3))
    s3_proxy.add(Fault("MLmodel", "status", status=503, times=2))
    dest = _dest_with_old_model(tmp_path)
    fetch("s3://faults/m", dest, settings_for(moto.env(s3_proxy.url)))
    assert tree(dest) == bucket
    assert len(s3_proxy.state.gets("weights.bin")) >= 4


def test_stalled_read_times_out_and_dest_is_untouched(
    moto: Moto, s3_proxy: FaultProxy, bucket: dict[str, bytes], tmp_path: Path
) -> None:
    s3_proxy.add(Fault("weights.bin", "stall", after=100_000, stall_s=4.0, times=100))
    dest = _dest_with_old_model(tmp_path)
    settings = settings_for(moto.env(s3_proxy.url), read_timeout_s=0.5, retries=1)
    t0 = time.monotonic()
    with pytest.raises(StorageError) as info:
        fetch("s3://faults/m", dest, settings)
    assert time.monotonic() - t0 < 30
    message = str(info.value)
    assert "s3://faults/m" in message and "data/weights.bin" in message
    assert tree(dest) == {"MLmodel": b"old model"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_persistent_errors_fail_naming_the_object(
    moto: Moto, s3_proxy: FaultProxy, bucket: dict[str, bytes], tmp_path: Path
) -> None:
    s3_proxy.add(Fault("weights.bin", "status", status=500, times=1000))
    dest = _dest_with_old_model(tmp_path)
    with pytest.raises(StorageError, match="weights.bin"):
        fetch("s3://faults/m", dest, settings_for(moto.env(s3_proxy.url), retries=1))
    assert tree(dest) == {"MLmodel": b"old model"}


def test_http_archive_survives_a_dropped_connection(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_root
    payload = os.urandom(2 * MIB)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model/data/blob.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    (root / "dropped.tar.gz").write_bytes(buf.getvalue())
    proxy = FaultProxy(url)
    try:
        proxy.add(Fault("dropped.tar.gz", "drop", after=300_000, times=1))
        fetch(f"{proxy.url}/dropped.tar.gz", tmp_path / "d", settings_for({}))
        assert tree(tmp_path / "d") == {"model/data/blob.bin": payload}
        assert len(proxy.state.gets("dropped.tar.gz")) == 2
    finally:
        proxy.close()
