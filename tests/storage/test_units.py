"""Storage pieces that need no server: path safety, redaction, settings, scheme routing, local and PVC
fetches, atomic placement and archive unpacking."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from modelport.errors import StorageError, UnsafePath
from modelport.storage import fetch, resolve_model
from modelport.storage.archives import unpack
from modelport.storage.config import StorageSettings
from modelport.storage.registry import scheme_of
from modelport.storage.source import redact, safe_relpath
from modelport.storage.transfer import split

MIB = 1024 * 1024


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "C:\\x", "", "a\x00b", "..", "./.."])
def test_safe_relpath_refuses_escapes(name: str) -> None:
    with pytest.raises(UnsafePath):
        safe_relpath(name)


def test_safe_relpath_keeps_ordinary_names() -> None:
    assert safe_relpath("data/model.pth") == "data/model.pth"
    assert safe_relpath("./code//__init__.py") == "code/__init__.py"
    assert safe_relpath("a b%c.txt") == "a b%c.txt"


def test_redact_drops_query_userinfo_and_secrets() -> None:
    text = "GET https://user:pw@h/b/k?X-Amz-Signature=abcd&sig=1 failed with key SECRETVALUE"
    out = redact(text, ["SECRETVALUE"])
    assert "abcd" not in out and "pw" not in out and "SECRETVALUE" not in out
    assert "https://***@h/b/k?***" in out


def test_settings_read_the_variables_users_set_and_hide_secrets() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "very-secret",
        "AWS_SESSION_TOKEN": "tok-secret",
        "S3_VERIFY_SSL": "0",
        "awsAnonymousCredential": "false",
        "AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=az-secret;BlobEndpoint=http://x/acct",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_TRACKING_TOKEN": "ml-secret",
        "MODELPORT_STORAGE_CONCURRENCY": "4",
    }
    s = StorageSettings.from_environ(env)
    assert (s.aws_endpoint_url, s.aws_access_key_id, s.s3_verify_ssl, s.aws_anonymous) == (
        "http://127.0.0.1:9000",
        "AKIA",
        False,
        False,
    )
    assert (s.azure_account_name, s.azure_account_key, s.azure_endpoint) == (
        "acct",
        "az-secret",
        "http://x/acct",
    )
    assert s.concurrency == 4
    shown = repr(s) + str(s)
    for secret in ("very-secret", "tok-secret", "az-secret", "ml-secret"):
        assert secret not in shown
    assert "AKIA" in shown


def test_kserve_s3_endpoint_spelling() -> None:
    s = StorageSettings.from_environ({"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"})
    assert s.aws_endpoint_url == "http://minio:9000"


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("/mnt/models", ""),
        ("relative/dir", ""),
        ("file:///x", "file"),
        ("pvc://claim/x", "pvc"),
        ("s3://b/k", "s3"),
        ("gs://b/k", "gs"),
        ("https://acct.blob.core.windows.net/c/p", "azure"),
        ("abfss://c@acct.dfs.core.windows.net/p", "abfss"),
        ("https://example.com/m.tar.gz", "https"),
        ("models:/iris/1", "models"),
        ("runs:/abc/model", "runs"),
        ("mlflow-artifacts:/0/x", "mlflow-artifacts"),
    ],
)
def test_scheme_routing(uri: str, scheme: str) -> None:
    assert scheme_of(uri) == scheme


def test_unknown_scheme_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported model URI scheme 'ftp'"):
        fetch("ftp://host/x", tmp_path / "d", StorageSettings())


def test_split_small_files_whole_large_files_in_ranges() -> None:
    s = StorageSettings(concurrency=8, min_part_size=8 * MIB)
    assert split(10 * MIB, s, True) == [(0, None)]
    parts = split(1000 * MIB, s, True)
    assert len(parts) == 8 and parts[0][0] == 0 and parts[-1][1] == 1000 * MIB
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
    assert split(1000 * MIB, s, False) == [(0, None)]


def _make_tree(root: Path) -> None:
    (root / "data").mkdir(parents=True)
    (root / "code").mkdir()
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "data" / "model.pth").write_bytes(os.urandom(3 * MIB + 5))
    (root / "code" / "__init__.py").write_bytes(b"")


def test_local_and_pvc_fetch_copy_byte_for_byte(tmp_path: Path) -> None:
    from storage_support import tree

    src = tmp_path / "pvcroot" / "models" / "iris"
    _make_tree(src)
    s = StorageSettings(pvc_root=str(tmp_path / "pvcroot"), min_part_size=1 * MIB)
    summary = fetch(str(src), tmp_path / "a", s)
    assert tree(tmp_path / "a") == tree(src)
    assert summary.files == 3 and summary.bytes == 3 * MIB + 5 + len("flavors: {}\n")
    fetch("pvc://claim/models/iris", tmp_path / "b", s)
    assert tree(tmp_path / "b") == tree(src)
    fetch(f"file://{src}/MLmodel", tmp_path / "c", s)
    assert tree(tmp_path / "c") == {"MLmodel": b"flavors: {}\n"}
    # Local models are served in place, not copied.
    assert resolve_model("pvc://claim/models/iris", s, tmp_path / "cache") == src.resolve()
    assert not (tmp_path / "cache").exists()


def test_missing_local_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"), StorageSettings(), tmp_path / "cache")


def test_fetch_replaces_existing_dest_whole_and_failure_keeps_it(tmp_path: Path) -> None:
    from storage_support import tree

    src = tmp_path / "src"
    _make_tree(src)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    fetch(str(src), dest, StorageSettings())
    assert tree(dest) == tree(src)
    before = tree(dest)
    with pytest.raises(StorageError):
        fetch(str(tmp_path / "missing"), dest, StorageSettings())
    assert tree(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "src"]  # no staging left behind


def _tar_with(member: tarfile.TarInfo, data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("model/MLmodel")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if member.isfile():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)
    return buf.getvalue()


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("member", "named"),
    [
        (tarfile.TarInfo("../evil.txt"), "../evil.txt"),
        (tarfile.TarInfo("model/../../evil.txt"), "model/../../evil.txt"),
        (tarfile.TarInfo("/etc/evil.txt"), "/etc/evil.txt"),
        (_symlink("model/link", "../../outside"), "model/link"),
        (_symlink("model/abs", "/etc/passwd"), "model/abs"),
    ],
)
def test_tar_members_outside_dest_are_refused_by_name(
    tmp_path: Path, member: tarfile.TarInfo, named: str
) -> None:
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(_tar_with(member))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafePath, match=named.replace(".", r"\.").replace("/", "/")):
        unpack(archive, "tar", out)
    assert list(out.iterdir()) == []  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


def test_tar_symlink_inside_is_kept(tmp_path: Path) -> None:
    archive = tmp_path / "m.tar"
    archive.write_bytes(_tar_with(_symlink("model/alias", "MLmodel")))
    unpack(archive, "tar", tmp_path / "out")
    assert (tmp_path / "out" / "model" / "alias").read_bytes() == b"ok"


def test_zip_members_outside_dest_are_refused(tmp_path: Path) -> None:
    for bad in ("../evil.txt", "/abs/evil.txt"):
        archive = tmp_path / "m.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("model/MLmodel", "ok")
            zf.writestr(zipfile.ZipInfo(bad), "evil")
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        with pytest.raises(UnsafePath, match="evil.txt"):
            unpack(archive, "zip", out)
        assert list(out.iterdir()) == []
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("model/link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "../../outside")
    with pytest.raises(UnsafePath, match="model/link"):
        unpack(archive, "zip", tmp_path / "out")


def test_tar_symlink_chains_cannot_reach_outside(tmp_path: Path) -> None:
    # Each name looks harmless; together a/b -> .. and a/b/c -> .. resolve to the parent of DEST.
    chain = [_symlink("a/b", ".."), _symlink("a/b/c", "..")]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member in chain:
            tar.addfile(member)
    archive = tmp_path / "chain.tar"
    archive.write_bytes(buf.getvalue())
    out = tmp_path / "sub" / "out"
    out.mkdir(parents=True)
    with pytest.raises(UnsafePath, match="symlink points outside"):
        unpack(archive, "tar", out)
    assert not (out / "c").exists() and not (out / "c").is_symlink()
