"""Unpack a packed environment (conda-pack or venv-pack layout) safely, and relocate it in place.

No member may land outside the target; links to the base interpreter are recreated, not trusted.
"""

from __future__ import annotations

import os
import re
import sys
import tarfile
import zlib
from pathlib import Path

from modelport.envs.build import Progress, run_tool
from modelport.envs.config import EnvSettings
from modelport.envs.pythons import choose, local_pythons
from modelport.errors import EnvironmentError_, UnsafePath

_INTERPRETER_LINK = re.compile(r"^(.*/)?bin/python(\d+(\.\d+)?)?$")
_SHEBANG = re.compile(rb"^#!\s*(\S*/bin/python[\d.]*)([^\n]*)\n")


def unpack(archive: Path, dest: Path) -> None:
    """Extract `archive` into `dest`, refusing anything that would land or point outside it."""
    dest.mkdir(parents=True)
    root = os.path.realpath(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                _extract(tar, member, dest, root)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise EnvironmentError_(f"the environment tarball {archive} is corrupt or unreadable: {exc}") from exc
    for path in _walk_links(dest):
        if not _inside(os.path.realpath(path), root) and not _INTERPRETER_LINK.match(
            path.relative_to(dest).as_posix()
        ):
            raise UnsafePath(
                f"the environment tarball {archive} has a link leading outside it: {path.relative_to(dest)}"
            )


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, root: str) -> None:
    name = member.name.removeprefix("./")
    if not name or name == ".":
        return
    if name.startswith("/") or ".." in Path(name).parts:
        raise UnsafePath(f"the environment tarball has a member outside its folder: {member.name}")
    target = os.path.join(root, name)
    parent = os.path.realpath(os.path.dirname(target))
    if not _inside(parent, root):
        raise UnsafePath(f"the environment tarball writes through a link out of its folder: {member.name}")
    if member.issym():
        if _INTERPRETER_LINK.match(name) and os.path.isabs(member.linkname):
            return  # recreated by relocate() from pyvenv.cfg
        resolved = os.path.normpath(os.path.join(os.path.dirname(target), member.linkname))
        if os.path.isabs(member.linkname) or not _inside(resolved, root):
            raise UnsafePath(
                f"the environment tarball has a link leading outside it: {member.name} -> {member.linkname}"
            )
    elif member.islnk():
        if not _inside(os.path.normpath(os.path.join(root, member.linkname.removeprefix("./"))), root):
            raise UnsafePath(f"the environment tarball has a hard link outside it: {member.name}")
    elif not (member.isfile() or member.isdir()):
        raise UnsafePath(f"the environment tarball holds a device or pipe: {member.name}")
    member.name = name
    if hasattr(tarfile, "tar_filter"):
        tar.extract(member, dest, set_attrs=True, filter="tar")
    else:  # pragma: no cover - Python < 3.10.12 lacks extraction filters
        tar.extract(member, dest, set_attrs=True)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _walk_links(dest: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                out.append(p)
    return out


def find_prefix(dest: Path) -> Path:
    """The environment's root: the folder itself, or its single top folder (tar -C parent env)."""
    if _is_prefix(dest):
        return dest
    subdirs = [p for p in dest.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and _is_prefix(subdirs[0]):
        return subdirs[0]
    raise EnvironmentError_(
        "the tarball is not a packed environment: no conda-meta/ (conda-pack) or pyvenv.cfg (venv-pack) at its top"
    )


def _is_prefix(path: Path) -> bool:
    return (path / "conda-meta").is_dir() or (path / "pyvenv.cfg").is_file()


def relocate(prefix: Path, settings: EnvSettings, progress: Progress) -> str:
    """Make an unpacked environment work at `prefix`; return "conda" or "venv"."""
    if (prefix / "conda-meta").is_dir():
        unpack_script = prefix / "bin" / "conda-unpack"
        if unpack_script.is_file():
            # conda-unpack rewrites the environment's own python binary ("Text file busy" when
            # that python runs it) and takes no arguments: run it with ours, by path.
            run_tool(
                [sys.executable, str(unpack_script)],
                "conda-unpack",
                dict(settings.process_environ),
                progress,
                cwd=prefix,
            )
        return "conda"
    _relocate_venv(prefix, settings)
    return "venv"


def _relocate_venv(prefix: Path, settings: EnvSettings) -> None:
    cfg_path = prefix / "pyvenv.cfg"
    cfg = _read_cfg(cfg_path)
    version = cfg.get("version_info") or cfg.get("version") or ""
    home = Path(cfg.get("home", ""))
    minor = ".".join(version.split(".")[:2])
    base = _base_in(home, minor)
    if base is None:
        hit = choose(version, local_pythons(settings)) if version else None
        if hit is None:
            raise EnvironmentError_(
                f"the packed environment needs Python {version or '(unknown version)'} from {home}, "
                "and no such Python is on this machine"
            )
        base = hit[1]
        text = cfg_path.read_text()
        text = re.sub(r"(?m)^home\s*=.*$", f"home = {base.parent}", text)
        cfg_path.write_text(text.replace(str(home), str(base.parent)))
    bindir = prefix / "bin"
    bindir.mkdir(exist_ok=True)
    for name in ("python", "python3", f"python{minor}" if minor else "python3"):
        link = bindir / name
        if link.is_symlink() and not link.exists():
            link.unlink()
        if not link.exists():
            link.symlink_to(base)
    _rewrite_shebangs(bindir, prefix, keep={str(home.parent), str(base.parent.parent)})


def _base_in(home: Path, minor: str) -> Path | None:
    for name in (f"python{minor}", "python3", "python"):
        if minor and (home / name).exists():
            return home / name
    return None


def _read_cfg(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _rewrite_shebangs(bindir: Path, prefix: Path, keep: set[str]) -> None:
    """Point scripts whose shebang names another environment's bin/python at this one.

    `keep` holds base-interpreter prefixes: a script run by the base Python is left alone.
    """
    new = str(prefix / "bin" / "python").encode()
    for path in bindir.iterdir():
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            continue
        data = path.read_bytes()
        match = _SHEBANG.match(data)
        if not match:
            continue
        old_prefix = os.path.dirname(os.path.dirname(match.group(1).decode(errors="replace")))
        if old_prefix == str(prefix) or old_prefix in keep:
            continue
        path.write_bytes(b"#!" + new + match.group(2) + b"\n" + data[match.end() :])
