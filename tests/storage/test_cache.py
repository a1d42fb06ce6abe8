"""The content-addressed cache behind ``modelport serve``: a second fetch of an unchanged model downloads
nothing, a changed object gives a new entry, and two processes fetching at once both get the same tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from storage_servers import REPO, Moto
from storage_support import settings_for, tree

from modelport.errors import StorageError
from modelport.storage import resolve_model

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def model(moto: Moto) -> dict[str, bytes]:
    client = moto.client()
    client.create_bucket(Bucket="cached")
    files = {"MLmodel": b"flavors: {}\n", "data/weights.bin": os.urandom(3 * MIB), "code/__init__.py": b""}
    for rel, body in files.items():
        client.put_object(Bucket="cached", Key=f"m/{rel}", Body=body)
    return files


def test_second_resolve_downloads_nothing(
    moto: Moto,
    s3_proxy: FaultProxy,
    model: dict[str, bytes],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(moto.env(s3_proxy.url))
    first = resolve_model("s3://cached/m", settings, tmp_path / "cache")
    assert tree(first) == model
    assert len(s3_proxy.state.gets("/m/")) == 2  # the two non-empty files
    s3_proxy.reset()
    with caplog.at_level("INFO", logger="modelport.storage"):
        second = resolve_model("s3://cached/m", settings, tmp_path / "cache")
    assert second == first
    assert s3_proxy.state.gets("/m/") == []  # only the listing went to the store
    assert "found in cache" in caplog.text


def test_changed_object_gives_a_new_entry(moto: Moto, model: dict[str, bytes], tmp_path: Path) -> None:
    client = moto.client()
    for rel, body in model.items():
        client.put_object(Bucket="cached", Key=f"changing/{rel}", Body=body)
    settings = settings_for(moto.env())
    first = resolve_model("s3://cached/changing", settings, tmp_path / "cache")
    client.put_object(Bucket="cached", Key="changing/MLmodel", Body=b"flavors: {python_function: {}}\n")
    second = resolve_model("s3://cached/changing", settings, tmp_path / "cache")
    assert second != first
    assert (second / "MLmodel").read_bytes() == b"flavors: {python_function: {}}\n"
    assert tree(first) == model  # the old entry is intact


def test_failed_fetch_leaves_no_entry(moto: Moto, tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        resolve_model("s3://cached/absent", settings_for(moto.env()), tmp_path / "cache")
    entries = list((tmp_path / "cache").glob("models/*")) if (tmp_path / "cache").exists() else []
    assert [p for p in entries if not p.name.endswith(".lock")] == []


def test_two_processes_fetching_at_once(
    moto: Moto, s3_proxy: FaultProxy, model: dict[str, bytes], tmp_path: Path
) -> None:
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from modelport.storage import resolve_model\n"
        "from modelport.storage.config import StorageSettings\n"
        "s = StorageSettings.from_environ(json.loads(sys.argv[1]))\n"
        "print(resolve_model('s3://cached/m', s, Path(sys.argv[2])))\n"
    )
    env_json = json.dumps(moto.env(s3_proxy.url))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, env_json, str(tmp_path / "cache")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode() for _, e in outs]
    paths = {Path(o.decode().strip()) for o, _ in outs}
    assert len(paths) == 1
    assert tree(paths.pop()) == model
    # The lock made the second process wait for the first instead of downloading again.
    assert len(s3_proxy.state.gets("weights.bin")) == 1
    leftovers = [p.name for p in (tmp_path / "cache" / "models").iterdir() if "staging" in p.name]
    assert leftovers == []
