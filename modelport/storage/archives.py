"""Unpack .tar, .tar.gz/.tgz and .zip archives, refusing any member that would land outside the destination.

Every member is checked before anything is written: ``..``, absolute names, links pointing out, devices.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from modelport.errors import StorageError, UnsafePath
from modelport.storage.source import safe_relpath


def _link_inside(member_rel: str, target: str) -> bool:
    if not target or target.startswith("/") or "\x00" in target:
        return False
    depth = 0
    parts = list(PurePosixPath(member_rel).parent.parts) + target.split("/")
    for part in parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def unpack_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                rel = safe_relpath(m.name, what="archive member")
                if m.issym() and not _link_inside(rel, m.linkname):
                    raise UnsafePath(
                        f"refusing archive member {m.name!r}: symlink points outside ({m.linkname!r})"
                    )
                if m.islnk():
                    safe_relpath(m.linkname, what="archive hard link target")
                if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
                    raise UnsafePath(f"refusing archive member {m.name!r}: device or fifo")
            for m in members:
                _extract_tar_member(tar, m, dest)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StorageError(f"cannot unpack {archive.name}: {exc}") from exc


def _member_target(dest: Path, name: str, is_dir: bool) -> Path | None:
    """Where a member lands, its folders made and checked; None for a folder member (made)."""
    target = dest.joinpath(*safe_relpath(name).split("/"))
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    _refuse_link_parent(target, dest, name)
    return target


def _extract_tar_member(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path) -> None:
    target = _member_target(dest, m.name, m.isdir())
    if target is None:
        return
    if m.issym():
        _symlink_inside(m.linkname, target, dest, m.name)
    elif m.islnk():
        source = dest.joinpath(*safe_relpath(m.linkname).split("/"))
        if not _inside(os.path.realpath(source), dest):
            raise UnsafePath(
                f"refusing archive member {m.name!r}: hard link reaches outside ({m.linkname!r})"
            )
        shutil.copyfile(source, target)
    else:
        src = tar.extractfile(m)
        if src is None:
            return
        with src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
        os.chmod(target, 0o755 if m.mode & 0o111 else 0o644)


def _inside(real_path: str, dest: Path) -> bool:
    real_dest = os.path.realpath(dest)
    return os.path.commonpath([real_path, real_dest]) == real_dest


def _refuse_link_parent(target: Path, dest: Path, name: str) -> None:
    # A member written through an earlier symlinked folder could still escape: check the real parent.
    if not _inside(os.path.realpath(target.parent), dest):
        raise UnsafePath(f"refusing archive member {name!r}: it would be written through a link outside")


def _symlink_inside(link: str, target: Path, dest: Path, name: str) -> None:
    # Names alone can be fooled by chains (a/b -> .., then a/b/c -> ..): check where the new link resolves.
    os.symlink(link, target)
    if not _inside(os.path.realpath(target), dest):
        target.unlink()
        raise UnsafePath(f"refusing archive member {name!r}: symlink points outside ({link!r})")


def unpack_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            links = {}
            for info in infos:
                rel = safe_relpath(info.filename, what="archive member")
                if stat.S_ISLNK(info.external_attr >> 16):
                    link = zf.read(info).decode("utf-8", "replace")
                    if not _link_inside(rel, link):
                        raise UnsafePath(
                            f"refusing archive member {info.filename!r}: symlink points outside ({link!r})"
                        )
                    links[info.filename] = link
            for info in infos:
                target = _member_target(dest, info.filename, info.is_dir())
                if target is None:
                    continue
                if info.filename in links:
                    _symlink_inside(links[info.filename], target, dest, info.filename)
                    continue
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1024 * 1024)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StorageError(f"cannot unpack {archive.name}: {exc}") from exc


def unpack(archive: Path, kind: str, dest: Path) -> None:
    if kind == "zip":
        unpack_zip(archive, dest)
    else:
        unpack_tar(archive, dest)
