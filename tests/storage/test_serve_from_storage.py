"""`modelport serve s3://...`: fetch into the cache, check the layout, serve; a restart downloads nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from storage_servers import Moto

from tests.conftest import EXAMPLE_IRIS, start_server

pytestmark = pytest.mark.slow


def _upload(moto: Moto, bucket: str, prefix: str, root: Path) -> None:
    client = moto.client()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.put_object(
            Bucket=bucket, Key=f"{prefix}/{path.relative_to(root).as_posix()}", Body=path.read_bytes()
        )


def test_serve_from_s3_uses_the_cache_on_restart(moto: Moto, pytorch_model: Path, tmp_path: Path) -> None:
    moto.client().create_bucket(Bucket="served")
    # MLflow's default artifact name "model", with a sibling that shares the prefix.
    _upload(moto, "served", "exp/1/run/artifacts/model", pytorch_model)
    _upload(moto, "served", "exp/1/run/artifacts/model-v2", EXAMPLE_IRIS)
    env = {**moto.env(), "MODELPORT_CACHE_DIR": str(tmp_path / "cache")}
    uri = "s3://served/exp/1/run/artifacts/model"
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 3.0]}]}

    first = start_server(uri, "--name", "pt", tmp=tmp_path / "a", env=env)
    try:
        resp = httpx.post(f"{first.base}/v2/models/pt/infer", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["shape"] == [1, 2]
        assert "fetched into cache" in first.log()
    finally:
        first.stop()
    (cached,) = [p for p in (tmp_path / "cache" / "models").iterdir() if p.is_dir()]
    assert (cached / "data" / "model.pth").is_file()  # not flattened to the root
    assert not (cached / "model.pth").exists() and not (cached / "model.skops").exists()  # no sibling

    second = start_server(uri, "--name", "pt", tmp=tmp_path / "b", env=env)
    try:
        assert "found in cache" in second.log()
        resp = httpx.post(f"{second.base}/v2/models/pt/infer", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
    finally:
        second.stop()
