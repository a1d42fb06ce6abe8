"""The one safe extractor (modelport.storage.archives): escapes refused, benign archives kept intact.

Archives are built here with tarfile/zipfile. Every refusal also asserts that nothing appeared outside
DEST (a real folder beside it). The reported chains also run through `python -m modelport fetch`.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

import pytest
from storage_servers import REPO
from storage_support import tree

from modelport.errors import StorageError, UnsafePath
from modelport.storage.archives import Limits, extract, unpack

# A tar member: (type, name, data or link target, mode).
Member = tuple[str, str, str, int]


def _member(kind: str, name: str, data: str = "", mode: int = 0o644) -> Member:
    return (kind, name, data, mode)


def _tar(path: Path, members: list[Member], mode: str = "w:gz") -> Path:
    types = {
        "sym": tarfile.SYMTYPE,
        "lnk": tarfile.LNKTYPE,
        "dir": tarfile.DIRTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
    }
    with tarfile.open(path, mode) as tar:
        for kind, name, data, perm in members:
            info = tarfile.TarInfo(name)
            info.mode = perm
            if kind == "file":
                body = data.encode()
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
                continue
            info.type = types[kind]
            info.linkname = data
            tar.addfile(info)
    return path


def _zip(path: Path, members: list[Member]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns on the duplicate names some tests need
        for kind, name, data, perm in members:
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
            fmt = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "sym": stat.S_IFLNK, "fifo": stat.S_IFIFO}[kind]
            info.external_attr = (fmt | perm) << 16
            zf.writestr(info, data)
    return path


def _escape_to(outside: Path, leaf: str = "") -> str:
    """The reported target: p/ x8, ../ x8, then an absolute path outside DEST without its leading slash."""
    return "p/" * 8 + "../" * 8 + str(outside).lstrip("/") + (f"/{leaf}" if leaf else "")


def exact_chain(outside: Path) -> list[Member]:
    # f -> p/p/.../../../ABS/PATH, p -> ., then a regular file f: written through f, it lands in ABS/PATH.
    return [
        _member("sym", "f", _escape_to(outside, "pwned")),
        _member("sym", "p", "."),
        _member("file", "f", "gotcha"),
    ]


def folder_chain(outside: Path, file: bool = False) -> list[Member]:
    # q -> p/p/.../ABS/PATH (a folder), p -> ., then the folder q/X/ (and a file in it): behind the link.
    chain = [_member("sym", "q", _escape_to(outside)), _member("sym", "p", "."), _member("dir", "q/X")]
    return [*chain, _member("file", "q/X/pwned", "gotcha")] if file else chain


def folder_file_chain(outside: Path) -> list[Member]:
    return folder_chain(outside, file=True)


@pytest.fixture()
def places(tmp_path: Path) -> tuple[Path, Path]:
    """(dest, outside): an empty DEST and an empty folder beside it that must stay empty."""
    outside = tmp_path / "outside"
    outside.mkdir()
    assert len(tmp_path.parts) < 8  # the ../ run of the chains really reaches / from DEST
    return tmp_path / "work" / "dest", outside


def _refused(archive: Path, kind: str, dest: Path, outside: Path, match: str) -> UnsafePath:
    with pytest.raises(UnsafePath, match=match) as info:
        unpack(archive, kind, dest)
    assert list(outside.iterdir()) == []
    assert not (dest.parent / "escaped").exists() and not (dest.parent.parent / "escaped").exists()
    return info.value


def test_the_chains_really_escape_a_naive_extractor(tmp_path: Path) -> None:
    # The archives below are real exploits: tarfile without a filter writes outside its folder.
    for chain, landed in [(exact_chain, "pwned"), (folder_chain, "X"), (folder_file_chain, "X/pwned")]:
        outside = tmp_path / f"outside-{chain.__name__}"
        outside.mkdir()
        archive = _tar(tmp_path / f"{chain.__name__}.tar", chain(outside), "w")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path / f"naive-{chain.__name__}", filter="fully_trusted")
        assert (outside / landed).exists()


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_the_reported_chain_is_refused_before_anything_is_written(
    places: tuple[Path, Path], tmp_path: Path, kind: str
) -> None:
    dest, outside = places
    make = _tar if kind == "tar" else _zip
    archive = make(tmp_path / f"x.{kind}", exact_chain(outside))
    err = _refused(
        archive, kind, dest, outside, r"member 'f' .*appears twice \(first as a symlink, then a file\)"
    )
    assert err.details["problem"] == "duplicate"
    assert not dest.exists() or list(dest.iterdir()) == []


@pytest.mark.parametrize("kind", ["tar", "zip"])
@pytest.mark.parametrize("chain", [folder_chain, folder_file_chain])
def test_the_folder_chain_is_refused(places: tuple[Path, Path], tmp_path: Path, kind: str, chain) -> None:  # noqa: ANN001
    dest, outside = places
    make = _tar if kind == "tar" else _zip
    archive = make(tmp_path / f"q.{kind}", chain(outside))
    _refused(archive, kind, dest, outside, r"member 'q/X/?' .*written through the symlink 'q'")
    assert not dest.exists() or list(dest.iterdir()) == []


def test_the_chain_without_its_file_is_refused_for_where_the_link_leads(
    places: tuple[Path, Path], tmp_path: Path
) -> None:
    dest, outside = places
    archive = _tar(tmp_path / "links.tar", exact_chain(outside)[:2])
    _refused(archive, "tar", dest, outside, r"member 'f' .*symlink points outside")


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([_member("file", "../escaped", "x")], r"'\.\./escaped' .*'\.\.' in its name"),
        ([_member("file", "model/../../escaped", "x")], r"'model/\.\./\.\./escaped'"),
        ([_member("dir", "../escaped")], r"'\.\./escaped'"),
        ([_member("file", "/tmp/modelport-abs-escaped", "x")], r"'/tmp/modelport-abs-escaped' .*absolute"),
        ([_member("sym", "model/abs", "/etc")], r"'model/abs' .*symlink points outside \(absolute"),
        ([_member("sym", "model/up", "../../escaped")], r"'model/up' .*symlink points outside"),
        ([_member("sym", "up", "..")], r"'up' .*symlink points outside"),
        # Each looks inside on its own; a/b/c resolves through a/b to the parent of DEST.
        ([_member("sym", "a/b", ".."), _member("sym", "a/b/c", "..")], r"'a/b/c' .*symlink points outside"),
        (
            [_member("dir", "d"), _member("sym", "d/l", ".."), _member("sym", "x", "d/l/..")],
            r"'x' .*points outside",
        ),
        ([_member("sym", "loop", "loop/x")], r"'loop' .*symlink points outside"),
        ([_member("lnk", "hard", "../escaped")], r"'hard' .*hard link reaches outside"),
        ([_member("lnk", "hard", "/etc/passwd")], r"'hard' .*hard link reaches outside"),
        (
            [_member("file", "real", "x"), _member("sym", "soft", "real"), _member("lnk", "hard", "soft")],
            r"'hard' .*source 'soft' is not a regular file",
        ),
        ([_member("lnk", "hard", "missing")], r"'hard' .*source 'missing' is not a regular file"),
        ([_member("chr", "dev/null-ish")], r"'dev/null-ish' .*device file"),
        ([_member("blk", "dev/disk")], r"'dev/disk' .*device file"),
        ([_member("fifo", "pipe")], r"'pipe' .*fifo"),
        (
            [_member("file", "m", "a"), _member("file", "m", "b")],
            r"'m' .*twice \(first as a file, then a file\)",
        ),
        (
            [_member("sym", "m", "x"), _member("file", "m", "b")],
            r"'m' .*twice \(first as a symlink, then a file\)",
        ),
        (
            [_member("file", "m", "a"), _member("sym", "m", "x")],
            r"'m' .*twice \(first as a file, then a symlink\)",
        ),
        (
            [_member("file", "m", "a"), _member("lnk", "m", "m")],
            r"'m' .*twice \(first as a file, then a hard link",
        ),
        (
            [_member("sym", "d", "sub"), _member("dir", "d")],
            r"'d' .*twice \(first as a symlink, then a folder\)",
        ),
        (
            [_member("dir", "d"), _member("sym", "d", "sub")],
            r"'d' .*twice \(first as a folder, then a symlink\)",
        ),
        ([_member("sym", "d", "."), _member("file", "d/x", "x")], r"'d/x' .*written through the symlink 'd'"),
        ([_member("file", "f", "x"), _member("file", "f/x", "x")], r"'f/x' .*written through the file 'f'"),
        ([_member("sym", "d", "."), _member("sym", "d/e", "x")], r"'d/e' .*written through the symlink 'd'"),
    ],
)
def test_unsafe_tar_members_are_refused(
    places: tuple[Path, Path], tmp_path: Path, members: list[Member], match: str
) -> None:
    dest, outside = places
    archive = _tar(tmp_path / "bad.tar.gz", [_member("file", "model/MLmodel", "ok"), *members])
    _refused(archive, "tar", dest, outside, match)
    # Refused on the headers alone: not even the harmless member was written.
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not Path("/tmp/modelport-abs-escaped").exists()


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([_member("file", "../escaped", "x")], r"'\.\./escaped'"),
        ([_member("file", "/tmp/modelport-abs-escaped", "x")], r"absolute"),
        ([_member("sym", "model/up", "../../escaped")], r"'model/up' .*symlink points outside"),
        ([_member("sym", "model/abs", "/etc")], r"'model/abs' .*symlink points outside"),
        ([_member("sym", "a/b", ".."), _member("sym", "a/b/c", "..")], r"'a/b/c' .*symlink points outside"),
        ([_member("fifo", "pipe")], r"'pipe' .*fifo"),
        ([_member("file", "m", "a"), _member("file", "m", "b")], r"'m' .*twice"),
        ([_member("sym", "m", "x"), _member("file", "m", "b")], r"'m' .*twice"),
        ([_member("sym", "d", "."), _member("dir", "d")], r"'d/' .*twice"),
        ([_member("sym", "d", "."), _member("file", "d/x", "x")], r"'d/x' .*written through the symlink 'd'"),
    ],
)
def test_unsafe_zip_members_are_refused(
    places: tuple[Path, Path], tmp_path: Path, members: list[Member], match: str
) -> None:
    dest, outside = places
    archive = _zip(tmp_path / "bad.zip", [_member("file", "model/MLmodel", "ok"), *members])
    _refused(archive, "zip", dest, outside, match)
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not Path("/tmp/modelport-abs-escaped").exists()


def test_links_already_in_dest_are_never_written_through(places: tuple[Path, Path], tmp_path: Path) -> None:
    # Not something the callers do (they unpack into a fresh staging folder), but the writes themselves
    # must not follow links: names alone say "p/x" is inside, the real path says otherwise.
    dest, outside = places
    dest.mkdir(parents=True)
    (dest / "p").symlink_to(outside)
    with pytest.raises(UnsafePath, match=r"'p/x' .*written through a link"):
        unpack(_tar(tmp_path / "a.tar", [_member("file", "p/x", "gotcha")]), "tar", dest)
    with pytest.raises(UnsafePath, match=r"'l' .*symlink points outside \('p/x' resolves to"):
        unpack(_tar(tmp_path / "b.tar", [_member("sym", "l", "p/x")]), "tar", dest)
    assert list(outside.iterdir()) == []
    (dest / "p").unlink()
    (dest / "taken").write_text("old")
    with pytest.raises(UnsafePath, match=r"'taken' .*already exists"):
        unpack(_tar(tmp_path / "c.tar", [_member("file", "taken", "new")]), "tar", dest)
    assert (dest / "taken").read_text() == "old"  # never overwritten


BENIGN: list[Member] = [
    _member("dir", "./"),
    _member("dir", "model", mode=0o775),
    _member("file", "model/MLmodel", "flavors: {}\n"),
    _member("file", "model/bin/run", "#!/bin/sh\n", 0o4777),  # setuid + world-writable: dropped
    _member("file", "model/private", "secret", 0o600),
    _member("file", "model/empty", ""),
    _member("sym", "model/alias", "MLmodel"),
    _member("sym", "model/bin/up", "../data/weights"),
    _member("sym", "model/top", "."),
    _member("dir", "model/data"),
    _member("dir", "model/data"),  # the same folder twice (tar appends) is fine
    _member("file", "model/data/weights", "w" * 1000),
    _member("lnk", "model/data/weights-again", "model/data/weights"),
    _member("sym", "model/dangling-inside", "not/yet/there"),
]


def test_benign_tar_with_inner_links_extracts_intact(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    unpack(_tar(tmp_path / "ok.tar.gz", BENIGN), "tar", dest)
    m = dest / "model"
    assert tree(dest) == {
        "model/MLmodel": b"flavors: {}\n",
        "model/alias": b"flavors: {}\n",
        "model/bin/run": b"#!/bin/sh\n",
        "model/bin/up": b"w" * 1000,
        "model/data/weights": b"w" * 1000,
        "model/data/weights-again": b"w" * 1000,
        "model/empty": b"",
        "model/private": b"secret",
    }
    assert os.readlink(m / "alias") == "MLmodel" and os.readlink(m / "top") == "."
    assert os.readlink(m / "dangling-inside") == "not/yet/there"
    assert (m / "data" / "weights-again").stat().st_ino == (m / "data" / "weights").stat().st_ino
    assert stat.S_IMODE((m / "bin" / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((m / "private").stat().st_mode) == 0o600
    assert stat.S_IMODE((m / "MLmodel").stat().st_mode) == 0o644
    assert stat.S_IMODE(m.stat().st_mode) == 0o755  # no group write
    assert (m / "top" / "top" / "MLmodel").read_bytes() == b"flavors: {}\n"


def test_benign_zip_with_inner_links_extracts_intact(tmp_path: Path) -> None:
    members = [
        _member("file", "model/MLmodel", "flavors: {}\n"),
        _member("file", "model/run.sh", "#!/bin/sh\n", 0o6777),
        _member("dir", "model/data"),
        _member("file", "model/data/weights", "w" * 1000),
        _member("sym", "model/data/alias", "../MLmodel"),
    ]
    dest = tmp_path / "dest"
    unpack(_zip(tmp_path / "ok.zip", members), "zip", dest)
    assert (dest / "model" / "data" / "alias").read_bytes() == b"flavors: {}\n"
    assert os.readlink(dest / "model" / "data" / "alias") == "../MLmodel"
    assert stat.S_IMODE((dest / "model" / "run.sh").stat().st_mode) == 0o755
    # A zip written without Unix modes (as on Windows) still gives readable files.
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("m/MLmodel", "x")
    unpack(plain, "zip", tmp_path / "plain")
    assert stat.S_IMODE((tmp_path / "plain" / "m" / "MLmodel").stat().st_mode) == 0o644


def test_absolute_links_the_caller_recreates_are_skipped_not_created(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "env.tar",
        [_member("sym", "bin/python", "/usr/bin/python3"), _member("sym", "bin/python3", "python")],
    )
    extract(archive, tmp_path / "env", skip_symlink=lambda name, target: name == "bin/python")
    assert not (tmp_path / "env" / "bin" / "python").is_symlink()
    assert os.readlink(tmp_path / "env" / "bin" / "python3") == "python"
    # Skipped does not mean gone: nothing may be written behind it either.
    archive = _tar(tmp_path / "env2.tar", [*_links_of(archive), _member("file", "bin/python/x", "x")])
    with pytest.raises(UnsafePath, match=r"'bin/python/x' .*through the symlink 'bin/python'"):
        extract(archive, tmp_path / "env2", skip_symlink=lambda name, target: name == "bin/python")


def test_a_caller_may_let_named_regular_files_repeat_and_the_last_copy_counts(tmp_path: Path) -> None:
    # venv-pack writes pyvenv.cfg twice; the env policy allows exactly that, nothing looser.
    def cfg(name: str) -> bool:
        return name == "pyvenv.cfg"

    twice = _tar(
        tmp_path / "twice.tar", [_member("file", "pyvenv.cfg", "old"), _member("file", "pyvenv.cfg", "new")]
    )
    extract(twice, tmp_path / "a", repeat_file=cfg)
    assert tree(tmp_path / "a") == {"pyvenv.cfg": b"new"}
    with pytest.raises(UnsafePath, match="appears twice"):
        extract(twice, tmp_path / "b")  # not allowed unless asked
    for members in (
        [_member("sym", "pyvenv.cfg", "x"), _member("file", "pyvenv.cfg", "new")],
        [_member("file", "pyvenv.cfg", "old"), _member("sym", "pyvenv.cfg", "x")],
        [_member("file", "other", "old"), _member("file", "other", "new")],
    ):
        with pytest.raises(UnsafePath, match="appears twice"):
            extract(_tar(tmp_path / "bad.tar", members), tmp_path / "c", repeat_file=cfg)


def _links_of(archive: Path) -> list[Member]:
    with tarfile.open(archive) as tar:
        return [_member("sym", m.name, m.linkname) for m in tar]


def test_member_count_and_total_size_are_bounded(tmp_path: Path) -> None:
    many = _tar(tmp_path / "many.tar", [_member("file", f"f{i}", "x") for i in range(11)])
    with pytest.raises(StorageError, match="more than 10 members"):
        extract(many, tmp_path / "a", limits=Limits(members=10))
    big = _tar(tmp_path / "big.tar", [_member("file", "a", "x" * 600), _member("file", "b", "x" * 600)])
    with pytest.raises(StorageError, match="more than 1000 bytes"):
        extract(big, tmp_path / "b", limits=Limits(total_bytes=1000))
    extract(big, tmp_path / "c", limits=Limits(members=2, total_bytes=1200))
    assert Limits().members >= 100_000 and Limits().total_bytes >= 1 << 40


def test_corrupt_archives_are_a_storage_error(tmp_path: Path) -> None:
    good = _tar(tmp_path / "g.tar.gz", [_member("file", "a", os.urandom(50_000).hex())])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:5_000])
    with pytest.raises(StorageError, match=r"the archive cut\.tar\.gz is corrupt or unreadable"):
        unpack(cut, "tar", tmp_path / "out")
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    with pytest.raises(StorageError, match="corrupt or unreadable"):
        unpack(tmp_path / "junk.zip", "zip", tmp_path / "out2")


# End to end: the real CLI against `python -m http.server` on loopback.


def _fetch(url: str, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "MODELPORT_"))}
    return subprocess.run(
        [sys.executable, "-m", "modelport", "fetch", url, str(dest)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("chain", "match"),
    [
        (exact_chain, "refusing archive member 'f' of the archive x.tar.gz: the name appears twice"),
        (folder_chain, "refusing archive member 'q/X' of the archive x.tar.gz: it would be written through"),
        (
            folder_file_chain,
            "refusing archive member 'q/X' of the archive x.tar.gz: it would be written through",
        ),
    ],
)
def test_cli_fetch_refuses_the_chains(
    http_root: tuple[Path, str],
    tmp_path: Path,
    chain,
    match: str,  # noqa: ANN001
) -> None:
    root, url = http_root
    outside = tmp_path / "outside"
    outside.mkdir()
    site = root / tmp_path.name
    site.mkdir()
    _tar(site / "x.tar.gz", chain(outside))
    dest = tmp_path / "work" / "dest"
    proc = _fetch(f"{url}/{tmp_path.name}/x.tar.gz", dest)
    assert proc.returncode == 2, proc.stderr
    assert f"modelport: error: {match}" in proc.stderr
    assert proc.stdout == ""
    assert list(outside.iterdir()) == []
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []  # no staging or scratch left
