"""Tarball cache keys: a file's digest is remembered by path, size and mtime, and follows changes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from modelport.envs.resolve import _sha256


def test_digest_is_remembered_and_follows_changes(tmp_path: Path) -> None:
    archive = tmp_path / "environment.tar.gz"
    archive.write_bytes(b"first")
    memo = tmp_path / "memo"
    assert _sha256(archive, memo) == hashlib.sha256(b"first").hexdigest()
    assert len(list(memo.iterdir())) == 1
    # Same path, size and mtime: the remembered value is used (proved by planting another one).
    (planted,) = memo.iterdir()
    planted.write_text("0" * 64)
    assert _sha256(archive, memo) == "0" * 64
    archive.write_bytes(b"second!")
    os.utime(archive, ns=(1, 1))
    assert _sha256(archive, memo) == hashlib.sha256(b"second!").hexdigest()
