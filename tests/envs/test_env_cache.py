"""The environment cache, safe tarball unpacking and interpreter choice, without building anything."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from packaging.version import Version

from modelport.envs import cache
from modelport.envs.config import EnvSettings
from modelport.envs.pythons import choose, find_base_python, local_pythons, nearest
from modelport.envs.tarball import find_prefix, relocate, unpack
from modelport.errors import EnvironmentError_, UnsafePath


def _finish(entry: Path) -> dict:
    return {"python": "bin/python", "files": sorted(p.name for p in entry.iterdir())}


def test_get_or_build_builds_once_and_marks_ready_last(tmp_path: Path) -> None:
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        tmp.mkdir()
        (tmp / "bin").mkdir()

    hit = cache.get_or_build(tmp_path, "k1", build, _finish)
    assert hit.built and hit.meta["files"] == ["bin"]
    again = cache.get_or_build(tmp_path, "k1", build, _finish)
    assert not again.built and again.path == hit.path and len(calls) == 1
    ready = cache.read_ready(tmp_path, "k1")
    assert ready is not None and ready["meta"]["python"] == "bin/python" and ready["bytes"] > 0


def test_failed_build_or_verification_leaves_nothing(tmp_path: Path) -> None:
    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "half").write_text("x")
        raise EnvironmentError_("resolver said no")

    with pytest.raises(EnvironmentError_, match="resolver said no"):
        cache.get_or_build(tmp_path, "k2", build, _finish)

    def bad_finish(entry: Path) -> dict:
        raise EnvironmentError_("cannot import mlflow")

    with pytest.raises(EnvironmentError_, match="cannot import"):
        cache.get_or_build(tmp_path, "k2", lambda t: t.mkdir(), bad_finish)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k2.lock", "k2.use.lock"]


def test_leftovers_of_a_dead_build_are_removed_not_reused(tmp_path: Path) -> None:
    (tmp_path / "k3").mkdir()  # renamed into place, but never marked ready
    (tmp_path / "k3" / "junk").write_text("x")
    (tmp_path / ".tmp-k3-999").mkdir()
    hit = cache.get_or_build(tmp_path, "k3", lambda t: t.mkdir(), _finish)
    assert hit.built and hit.meta["files"] == []
    assert not (tmp_path / ".tmp-k3-999").exists()


def test_two_builders_at_once_build_once(tmp_path: Path) -> None:
    builds = []
    waits = []

    def build(tmp: Path) -> None:
        builds.append(1)
        time.sleep(0.5)
        tmp.mkdir()

    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                cache.get_or_build(tmp_path, "k4", build, _finish, on_wait=waits.append)
            )
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(waits) == 1
    assert sorted(r.built for r in results) == [False, True]


def test_cache_key_depends_on_every_part() -> None:
    a = cache.cache_key("uv", "digest", "3.11.7")
    assert a == cache.cache_key("uv", "digest", "3.11.7")
    assert a != cache.cache_key("uv", "digest", "3.11.8")
    assert a != cache.cache_key("uv", "other", "3.11.7")


def _tar(path: Path, members: list[tuple[str, str, str]]) -> Path:
    """members: (kind, name, data-or-linkname) with kind file|sym|lnk|dir|fifo."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data.encode()))
                continue
            info.type = {
                "sym": tarfile.SYMTYPE,
                "lnk": tarfile.LNKTYPE,
                "dir": tarfile.DIRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = data
            tar.addfile(info)
    return path


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([("file", "pyvenv.cfg", ""), ("file", "../evil.txt", "x")], "outside its folder"),
        ([("file", "/tmp/evil-abs.txt", "x")], "outside its folder"),
        ([("sym", "lib/out", "/etc")], "link leading outside"),
        ([("sym", "lib/up", "../../..")], "link leading outside"),
        ([("lnk", "hard", "../../etc/passwd")], "hard link outside"),
        ([("fifo", "pipe", "")], "device or pipe"),
        # A chain whose parts each look inside: d/l2 -> .. (the root), then x -> d/l2/.. (its parent).
        ([("dir", "d", ""), ("sym", "d/l2", ".."), ("sym", "x", "d/l2/../..")], "link leading outside"),
        (
            [("sym", "sub", "."), ("sym", "sub2", "sub/.."), ("file", "sub2/escape.txt", "x")],
            "link out of its folder",
        ),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, members: list, match: str) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", members)
    dest = tmp_path / "out" / "env"
    with pytest.raises(UnsafePath, match=match):
        unpack(archive, dest)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-abs.txt").exists()
    assert not (tmp_path / "out" / "escape.txt").exists()


def test_interpreter_links_to_the_base_are_skipped_for_relocation(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [
            ("file", "pyvenv.cfg", "home = /nowhere/bin\n"),
            ("dir", "bin", ""),
            ("sym", "bin/python", "/nowhere/bin/python3.11"),
            ("sym", "bin/python3", "python"),
            ("file", "lib/python3.11/site-packages/a.py", "x = 1\n"),
        ],
    )
    unpack(archive, tmp_path / "env")
    assert not (tmp_path / "env" / "bin" / "python").is_symlink()
    assert os.readlink(tmp_path / "env" / "bin" / "python3") == "python"
    assert find_prefix(tmp_path / "env") == tmp_path / "env"


def test_corrupt_and_non_environment_tarballs(tmp_path: Path) -> None:
    good = _tar(tmp_path / "g.tar.gz", [("file", "readme.txt", "hello" * 1000)])
    (tmp_path / "cut.tar.gz").write_bytes(good.read_bytes()[:60])
    with pytest.raises(EnvironmentError_, match="corrupt"):
        unpack(tmp_path / "cut.tar.gz", tmp_path / "e1")
    unpack(good, tmp_path / "e2")
    with pytest.raises(EnvironmentError_, match="not a packed environment"):
        find_prefix(tmp_path / "e2")


def test_python_choice() -> None:
    have = [(Version(v), Path(f"/py/{v}/bin/python")) for v in ["3.9.18", "3.10.13", "3.11.7", "3.12.1"]]
    assert choose("3.11.7", have)[2] == "exact"
    assert choose("3.11.2", have)[:1] == (Version("3.11.7"),) and "for 3.11.2" in choose("3.11.2", have)[2]
    assert choose("3.11", have)[0] == Version("3.11.7")
    assert choose("3.8.10", have) is None
    assert nearest("3.8.10", have)[0] == Version("3.9.18")
    assert nearest("3.14.0", have)[0] == Version("3.12.1")
    assert nearest("2.7.18", have) is None


def test_missing_python_is_a_plain_error_unless_mismatch_allowed(tmp_path: Path) -> None:
    for v in ["3.9.18", "3.11.7"]:
        (tmp_path / v / "bin").mkdir(parents=True)
        (tmp_path / v / "bin" / "python").write_text("")
    env = {
        "HOME": str(tmp_path),
        "UV_PYTHON_DOWNLOADS": "never",
        "MODELPORT_PYTHON_DIRS": str(tmp_path),
        "PATH": "/nonexistent",
    }
    settings = EnvSettings.from_flags({}, env)
    with pytest.raises(
        EnvironmentError_, match=r"saved with Python 3\.5\.2.*--allow-python-mismatch to use 3\.9\.18"
    ):
        find_base_python("3.5.2", settings, "uv")
    allowed = EnvSettings.from_flags({"allow_python_mismatch": True}, env)
    base = find_base_python("3.5.2", allowed, "uv")
    assert base.version == "3.9.18" and "--allow-python-mismatch" in base.note


def test_a_venv_packed_elsewhere_is_pointed_at_a_local_python(tmp_path: Path) -> None:
    settings = EnvSettings.from_flags({}, {"HOME": "/root", "PATH": "/usr/bin:/bin"})
    if not any(v.release[:2] == (3, 11) for v, _ in local_pythons(settings)):
        pytest.skip("needs a local CPython 3.11")
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text(
        "home = /opt/elsewhere/bin\nversion_info = 3.11.7\ninclude-system-site-packages = false\n"
    )
    (prefix / "bin" / "python").symlink_to("/opt/elsewhere/bin/python3.11")  # dangling here
    (prefix / "bin" / "tool").write_text("#!/build/old-env/bin/python -u\nprint('tool ran')\n")
    (prefix / "bin" / "tool").chmod(0o755)
    assert relocate(prefix, settings, lambda _line: None) == "venv"
    assert "/opt/elsewhere" not in (prefix / "pyvenv.cfg").read_text()
    assert (prefix / "bin" / "tool").read_text().startswith(f"#!{prefix}/bin/python -u\n")
    out = subprocess.run(
        [str(prefix / "bin" / "python"), "-I", "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == str(prefix)
    assert (
        subprocess.run([str(prefix / "bin" / "tool")], capture_output=True, text=True, check=True).stdout
        == "tool ran\n"
    )
