"""Packed environments: `env build --pack`, venv-pack and the conda-pack layout, unpacked and run.

Slow: each tarball holds a full MLflow 2.9 stack (~200 MB packed).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import venv_pack
from envs_support import base_python, cache_leftovers, make_settings, predict_with, uv_environ

from modelport.envs import Interpreter, resolve_interpreter
from modelport.envs.build import uv_binary
from modelport.envs.commands import build_command
from modelport.errors import EnvironmentError_, UnsafePath

pytestmark = pytest.mark.slow

_STDLIB_SKIP = shutil.ignore_patterns(
    "site-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "__pycache__",
    "config-3.*",
)

CONDA_UNPACK = '''#!/usr/bin/env python
"""Stand-in for conda-pack's conda-unpack, with its contract: no arguments, the new prefix from
its own location, binaries patched in place (so it cannot run under the environment's own python)."""
import argparse
import os

PLACEHOLDER = {placeholder!r}
TEXT_FILES = {text_files!r}
BINARY_FILES = ["bin/python3.11"]

argparse.ArgumentParser(prog="conda-unpack").parse_args()
new_prefix = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for rel in BINARY_FILES:
    with open(os.path.join(new_prefix, rel), "rb+"):
        pass  # ETXTBSY ("Text file busy") when this binary is the interpreter running us
for rel in TEXT_FILES:
    path = os.path.join(new_prefix, rel)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(PLACEHOLDER.encode(), new_prefix.encode()))
'''


def _tar_folder(src: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for p in sorted(src.iterdir()):
            tar.add(p, arcname=p.name)
    return out


def test_env_build_pack_makes_a_tarball_the_tarball_policy_runs(
    env_29: Interpreter, model_29: tuple[Path, dict], env_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "dist" / "environment.tar.gz"
    assert build_command(str(model_29[0]), make_settings(env_cache, "auto"), pack=str(out), python=None) == 0
    assert out.is_file() and not list(out.parent.glob(".*tmp"))
    cache_dir = tmp_path / "fresh-cache"
    interp = resolve_interpreter(model_29[0], make_settings(cache_dir, f"tarball:{out}"))
    assert interp.reason.startswith("tarball: unpacked environment.tar.gz (venv)")
    assert interp.prefix != env_29.prefix  # its own unpacked copy
    got = predict_with(interp.python, model_29[0])
    assert got["prefix"] == interp.prefix and got["pred"] == model_29[1]["pred"]
    assert got["proba"] == model_29[1]["proba"]
    again = resolve_interpreter(model_29[0], make_settings(cache_dir, f"tarball:{out}"))
    assert again.reason.startswith("tarball: cached venv env") and again.python == interp.python


def test_venv_pack_tarball_runs(env_29: Interpreter, model_29: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "venvpack.tar.gz"
    venv_pack.pack(prefix=env_29.prefix, output=str(out), compress_level=1)
    interp = resolve_interpreter(model_29[0], make_settings(tmp_path / "cache", f"tarball:{out}"))
    assert "(venv)" in interp.reason
    assert predict_with(interp.python, model_29[0])["proba"] == model_29[1]["proba"]


@pytest.fixture(scope="module")
def conda_layout_tarball(model_29: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conda-pack style archive: a full prefix (own python + stdlib), conda-meta/, bin/conda-unpack."""
    base = base_python().resolve()
    if base.name != "python3.11":
        pytest.skip("the conda layout test copies a CPython 3.11 prefix")
    prefix = tmp_path_factory.mktemp("conda-build") / "opt" / "model-env"
    (prefix / "bin").mkdir(parents=True)
    shutil.copy2(base, prefix / "bin" / "python3.11")
    (prefix / "bin" / "python").symlink_to("python3.11")
    (prefix / "bin" / "python3").symlink_to("python3.11")
    shutil.copytree(
        base.parent.parent / "lib" / "python3.11", prefix / "lib" / "python3.11", ignore=_STDLIB_SKIP
    )
    (prefix / "lib" / "python3.11" / "site-packages").mkdir()
    python = prefix / "bin" / "python"
    found = subprocess.run(
        [str(python), "-I", "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # Never install into a base interpreter by mistake.
    assert found == str(prefix), found
    subprocess.run(
        [
            uv_binary(),
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            "-r",
            str(model_29[0] / "requirements.txt"),
            "setuptools<82",
        ],
        check=True,
        env=uv_environ(),
    )
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "history").write_text("==> 2024-01-01 00:00:00 <==\n# cmd: conda create\n")
    text_files = sorted(
        f"bin/{p.name}"
        for p in (prefix / "bin").iterdir()
        if p.is_file() and not p.is_symlink() and str(prefix).encode() in p.read_bytes()[:4096]
    )
    assert "bin/mlflow" in text_files
    script = prefix / "bin" / "conda-unpack"
    script.write_text(CONDA_UNPACK.format(placeholder=str(prefix), text_files=text_files))
    script.chmod(0o755)
    return _tar_folder(prefix, prefix.parent.parent / "conda-env.tar.gz")


def test_conda_pack_layout_is_unpacked_relocated_and_run(
    conda_layout_tarball: Path,
    model_29: tuple[Path, dict],
    copy_model: Callable[[Path], Path],
    tmp_path: Path,
) -> None:
    model_dir = copy_model(model_29[0])
    shutil.copy2(conda_layout_tarball, model_dir / "environment.tar.gz")  # the default place
    interp = resolve_interpreter(model_dir, make_settings(tmp_path / "cache", "tarball"))
    assert "(conda)" in interp.reason
    prefix = Path(interp.prefix)
    assert (prefix / "bin" / "mlflow").read_text().startswith(f"#!{prefix}/bin/python")
    got = predict_with(interp.python, model_dir)
    assert got["prefix"] == str(prefix) and got["proba"] == model_29[1]["proba"]


def test_corrupt_tarball_is_a_clear_error_and_leaves_nothing(
    conda_layout_tarball: Path, model_29: tuple[Path, dict], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(conda_layout_tarball.read_bytes()[:5_000_000])
    cache_dir = tmp_path / "cache"
    with pytest.raises(EnvironmentError_, match="corrupt or unreadable"):
        resolve_interpreter(model_29[0], make_settings(cache_dir, f"tarball:{broken}"))
    assert cache_leftovers(cache_dir) == []
    with pytest.raises(EnvironmentError_, match="no environment.tar.gz"):
        resolve_interpreter(model_29[0], make_settings(cache_dir, "tarball"))


def test_tarball_with_dotdot_members_is_refused(model_29: tuple[Path, dict], tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for name, data in [("pyvenv.cfg", b"home = /usr/bin\n"), ("../../../escaped.txt", b"gotcha")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cache_dir = tmp_path / "a" / "b" / "cache"
    with pytest.raises(UnsafePath, match=r"outside its folder: \.\./\.\./\.\./escaped\.txt"):
        resolve_interpreter(model_29[0], make_settings(cache_dir, f"tarball:{evil}"))
    assert not list(tmp_path.rglob("escaped.txt"))
    assert cache_leftovers(cache_dir) == []


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def _escape_chain(outside: Path, variant: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The reported chain: X -> p/ x8 ../ x8 ABS/PATH (no leading slash), p -> ., then something written at X."""
    escape = "p/" * 8 + "../" * 8 + str(outside).lstrip("/")
    if variant == "file":
        return [
            (_link("f", escape + "/pwned"), None),
            (_link("p", "."), None),
            (tarfile.TarInfo("f"), b"gotcha"),
        ]
    folder = tarfile.TarInfo("q/X")
    folder.type = tarfile.DIRTYPE
    return [
        (_link("q", escape), None),
        (_link("p", "."), None),
        (folder, None),
        (tarfile.TarInfo("q/X/pwned"), b"x"),
    ]


@pytest.mark.parametrize(
    ("variant", "match"),
    [
        (
            "file",
            r"holds the same member name twice: f \(the name appears twice \(first as a symlink, then a file\)\)",
        ),
        (
            "folder",
            r"writes through a link out of its folder: q/X \(it would be written through the symlink 'q'\)",
        ),
    ],
)
def test_tarball_with_a_link_chain_escape_is_refused(
    model_29: tuple[Path, dict], tmp_path: Path, variant: str, match: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    assert len(tmp_path.parts) < 8  # the ../ run really reaches / from the unpack folder
    evil = tmp_path / "evil-env.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        # A venv-pack layout: its absolute interpreter link is skipped (relocate() recreates it), the chain is not.
        cfg = b"home = /usr/bin\nversion = 3.11.7\n"
        info = tarfile.TarInfo("pyvenv.cfg")
        info.size = len(cfg)
        tar.addfile(info, io.BytesIO(cfg))
        tar.addfile(_link("bin/python", "/usr/bin/python3.11"))
        for member, data in _escape_chain(outside, variant):
            if data is None:
                tar.addfile(member)
            else:
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    cache_dir = tmp_path / "cache"
    with pytest.raises(UnsafePath, match=rf"the environment tarball {evil} {match}"):
        resolve_interpreter(model_29[0], make_settings(cache_dir, f"tarball:{evil}"))
    assert list(outside.iterdir()) == []
    assert cache_leftovers(cache_dir) == []
