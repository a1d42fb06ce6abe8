"""HTTP(S) single files and archives (.tar, .tar.gz/.tgz, .zip) from ``python -m http.server``."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from storage_support import settings_for, tree

from modelport.errors import StorageError, UnsafePath
from modelport.storage import fetch, resolve_model

pytestmark = pytest.mark.slow

FILES = {
    "model/MLmodel": b"flavors: {}\n",
    "model/data/model.pth": os.urandom(300_000),
    "model/code/__init__.py": b"",
}


def _tar(mode: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("m.tar", lambda f: _tar("w", f)),
        ("m.tar.gz", lambda f: _tar("w:gz", f)),
        ("m.tgz", lambda f: _tar("w:gz", f)),
        ("m.zip", _zip),
    ],
)
def test_archives_are_unpacked(http_root: tuple[Path, str], tmp_path: Path, name: str, make) -> None:  # noqa: ANN001
    root, url = http_root
    (root / name).write_bytes(make(FILES))
    fetch(f"{url}/{name}", tmp_path / "d", settings_for({}))
    assert tree(tmp_path / "d") == FILES


def test_single_file_is_fetched_as_is(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_root
    (root / "model.joblib").write_bytes(b"\x80\x04joblib")
    fetch(f"{url}/model.joblib?token=abc", tmp_path / "d", settings_for({}))
    assert tree(tmp_path / "d") == {"model.joblib": b"\x80\x04joblib"}


def test_http_model_is_cached(http_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = http_root
    (root / "cached.tar.gz").write_bytes(_tar("w:gz", FILES))
    first = resolve_model(f"{url}/cached.tar.gz", settings_for({}), tmp_path / "cache")
    assert tree(first) == FILES
    assert resolve_model(f"{url}/cached.tar.gz", settings_for({}), tmp_path / "cache") == first


@pytest.mark.parametrize("evil", ["../escape.txt", "/tmp/abs-escape.txt"])
def test_unsafe_archive_is_refused_and_dest_untouched(
    http_root: tuple[Path, str], tmp_path: Path, evil: str
) -> None:
    root, url = http_root
    (root / "evil.tar.gz").write_bytes(_tar("w:gz", {**FILES, evil: b"pwned"}))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep").write_text("keep")
    with pytest.raises(UnsafePath, match=evil.replace(".", r"\.")):
        fetch(f"{url}/evil.tar.gz", dest, settings_for({}))
    assert tree(dest) == {"keep": b"keep"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]
    assert not Path("/tmp/abs-escape.txt").exists()


def test_missing_file_is_a_clear_error(http_root: tuple[Path, str], tmp_path: Path) -> None:
    _, url = http_root
    with pytest.raises(StorageError, match="not found"):
        fetch(f"{url}/absent.tar.gz", tmp_path / "d", settings_for({}))
