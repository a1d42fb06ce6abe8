"""``modelport fetch`` and ``modelport storage-initializer`` as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from storage_servers import REPO, Moto
from storage_support import tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(moto: Moto) -> dict[str, dict[str, bytes]]:
    client = moto.client()
    client.create_bucket(Bucket="cli")
    out = {
        "a": {"MLmodel": b"a\n", "data/model.pth": os.urandom(50_000), "code/__init__.py": b""},
        "b": {"MLmodel": b"b\n", "model.pkl": os.urandom(1000)},
    }
    for name, files in out.items():
        for rel, body in files.items():
            client.put_object(Bucket="cli", Key=f"{name}/{rel}", Body=body)
    return out


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))} | env
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        env=full,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fetch_prints_only_the_destination(
    moto: Moto, models: dict[str, dict[str, bytes]], tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    proc = _run(["fetch", "s3://cli/a", str(dest)], moto.env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{dest}\n"
    assert tree(dest) == models["a"]
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    files = sorted(r["path"] for r in records if r["event"] == "file")
    assert files == sorted(models["a"])
    summary = records[-1]
    assert summary["event"] == "summary" and summary["files"] == 3
    assert summary["bytes"] == sum(len(b) for b in models["a"].values())
    assert {"seconds", "mb_per_s"} <= set(summary)
    assert "testing-secret" not in proc.stderr


def test_storage_initializer_pairs(moto: Moto, models: dict[str, dict[str, bytes]], tmp_path: Path) -> None:
    a, b = tmp_path / "mnt" / "a", tmp_path / "mnt" / "b"
    proc = _run(["storage-initializer", "s3://cli/a", str(a), "s3://cli/b/", str(b)], moto.env())
    assert proc.returncode == 0, proc.stderr
    assert tree(a) == models["a"] and tree(b) == models["b"]


def test_storage_initializer_fails_non_zero_and_leaves_dest(moto: Moto, tmp_path: Path) -> None:
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "keep").write_text("keep")
    proc = _run(["storage-initializer", "s3://cli/absent", str(dest)], moto.env())
    assert proc.returncode != 0
    assert "s3://cli/absent" in proc.stderr and "Traceback" not in proc.stderr
    assert tree(dest) == {"keep": b"keep"}


def test_odd_argument_count_is_refused(moto: Moto, tmp_path: Path) -> None:
    proc = _run(["storage-initializer", "s3://cli/a"], moto.env())
    assert proc.returncode != 0 and "pairs" in proc.stderr
