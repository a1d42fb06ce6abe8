"""S3 (moto), GCS (fake-gcs-server) and Azure (Azurite): trees byte for byte, and the three KServe
regressions (flattened data/model.pth, sibling prefix pulled in, zero-byte files dropped)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import obstore
import pytest
from faultproxy import FaultProxy
from storage_servers import AWS, Moto, azure_connection_string, azure_create_container, gcs_put
from storage_support import settings_for, tree

from modelport.errors import StorageError, UnsafePath
from modelport.storage import fetch
from modelport.storage.config import StorageSettings

pytestmark = pytest.mark.slow

PREFIX = "models/iris/artifacts/model"
SIBLING = {
    "models/iris/artifacts/model-v2/MLmodel": b"sibling",
    "models/iris/artifacts/model-v2/data/x.bin": b"v2",
}

Store = tuple[str, StorageSettings, Callable[[dict[str, bytes]], None]]


def _s3(moto: Moto) -> Store:
    client = moto.client()
    client.create_bucket(Bucket="kserve-regress")

    def put(files: dict[str, bytes]) -> None:
        for key, body in files.items():
            client.put_object(Bucket="kserve-regress", Key=key, Body=body)

    return "s3://kserve-regress", settings_for(moto.env()), put


def _gcs(url: str) -> Store:
    return (
        "gs://kserve-regress",
        settings_for({"STORAGE_EMULATOR_HOST": url}),
        lambda f: gcs_put(url, "kserve-regress", f),
    )


def _azure(url: str) -> Store:
    azure_create_container(url, "kserve-regress")
    settings = settings_for({"AZURE_STORAGE_CONNECTION_STRING": azure_connection_string(url)})
    from obstore.store import AzureStore

    store = AzureStore(
        "kserve-regress",
        account_name="devstoreaccount1",
        account_key=settings.azure_account_key,
        endpoint=url,
        client_options={"allow_http": True},
    )

    def put(files: dict[str, bytes]) -> None:
        for key, body in files.items():
            obstore.put(store, key, body)

    return "az://kserve-regress", settings, put


@pytest.fixture(scope="module", params=["s3", "gcs", "azure"])
def store(request: pytest.FixtureRequest, pytorch_model: Path) -> Store:
    if request.param == "s3":
        made = _s3(request.getfixturevalue("moto"))
    elif request.param == "gcs":
        made = _gcs(request.getfixturevalue("gcs"))
    else:
        made = _azure(request.getfixturevalue("azurite"))
    base, settings, put = made
    put({f"{PREFIX}/{rel}": body for rel, body in tree(pytorch_model).items()})
    put(SIBLING)
    return made


@pytest.mark.parametrize("slash", ["", "/"], ids=["no-slash", "trailing-slash"])
def test_mlflow_model_prefix_fetches_exact_tree(
    store: Store, pytorch_model: Path, tmp_path: Path, slash: str
) -> None:
    base, settings, _ = store
    dest = tmp_path / "mnt" / "models"
    summary = fetch(f"{base}/{PREFIX}{slash}", dest, settings)
    got = tree(dest)
    # Regression 1: data/model.pth stays under data/ although the prefix ends in "model".
    assert "data/model.pth" in got and "model.pth" not in got
    # Regression 2: the sibling prefix model-v2/ is not pulled in.
    assert not any("model-v2" in rel or rel == "x.bin" for rel in got)
    # Regression 3: the zero-byte code/.../__init__.py survives.
    inits = [rel for rel in got if rel.startswith("code/") and rel.endswith("__init__.py")]
    assert inits and all(got[rel] == b"" for rel in inits)
    assert got == tree(pytorch_model)
    assert summary.files == len(got)


def test_single_object_fetches_that_file(store: Store, pytorch_model: Path, tmp_path: Path) -> None:
    base, settings, _ = store
    fetch(f"{base}/{PREFIX}/data/model.pth", tmp_path / "d", settings)
    assert tree(tmp_path / "d") == {"model.pth": (pytorch_model / "data" / "model.pth").read_bytes()}


def test_missing_prefix_is_a_clear_error_and_dest_untouched(store: Store, tmp_path: Path) -> None:
    base, settings, _ = store
    with pytest.raises(StorageError, match="nothing found at"):
        fetch(f"{base}/models/absent", tmp_path / "d", settings)
    assert list(tmp_path.iterdir()) == []


def test_key_escaping_dest_is_refused_by_name(moto: Moto, tmp_path: Path) -> None:
    client = moto.client()
    client.create_bucket(Bucket="evil-keys")
    client.put_object(Bucket="evil-keys", Key="m/ok.txt", Body=b"ok")
    client.put_object(Bucket="evil-keys", Key="m/../../../etc/evil", Body=b"x")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("keep")
    with pytest.raises(UnsafePath, match=r"m/\.\./\.\./\.\./etc/evil"):
        fetch("s3://evil-keys/m", dest, settings_for(moto.env()))
    assert tree(dest) == {"keep.txt": b"keep"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_large_file_in_parallel_ranges(moto: Moto, s3_proxy: FaultProxy, tmp_path: Path) -> None:
    client = moto.client()
    client.create_bucket(Bucket="big")
    big = os.urandom(12 * 1024 * 1024 + 7)
    files = {"m/weights.bin": big, **{f"m/small/{i:03d}.txt": os.urandom(i) for i in range(40)}}
    for key, body in files.items():
        client.put_object(Bucket="big", Key=key, Body=body)
    settings = settings_for(moto.env(s3_proxy.url), min_part_size=1024 * 1024, concurrency=4)
    fetch("s3://big/m", tmp_path / "d", settings)
    assert tree(tmp_path / "d") == {k[len("m/") :]: v for k, v in files.items()}
    ranges = [s.range for s in s3_proxy.state.gets("weights.bin")]
    assert len(ranges) == 4 and all(r and r.startswith("bytes=") for r in ranges)


def test_credentials_never_reach_errors(moto: Moto, tmp_path: Path) -> None:
    env = {**AWS, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_SECRET_ACCESS_KEY": "sup3r-s3cret-value"}
    with pytest.raises(StorageError) as info:
        fetch("s3://b/m", tmp_path / "d", settings_for(env, retries=0, connect_timeout_s=1.0))
    assert "sup3r-s3cret-value" not in str(info.value)
    assert "s3://b/m" in str(info.value)
