"""The one extractor for .tar, .tar.gz/.tgz and .zip: model archives (storage) and packed environments (envs).

Nothing it writes can land, or be written through a link, outside the destination folder.

How, in order:
1. Every member header is read and the archive is refused before anything is written: bad names (absolute,
   ``..``), devices and fifos, duplicate names, members behind a link or a file, hard links to anything but a
   regular member, symlinks that leave the folder when resolved over the archive's own links.
2. Folders, then regular files, then hard links, then symlinks (last) are created relative to folder fds opened
   with O_NOFOLLOW|O_DIRECTORY; files with O_CREAT|O_EXCL|O_NOFOLLOW: nothing is written through a link or over
   an existing path.
3. Once all exist, every symlink is checked again where it really resolves (``os.path.realpath``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modelport.errors import StorageError, UnsafePath
from modelport.storage.source import safe_relpath

# Problems an UnsafePath from here names in its details["problem"], so callers can word them their way.
NAME, SPECIAL, DUPLICATE, BEHIND_LINK, SYMLINK, HARDLINK = (
    "name",
    "special",
    "duplicate",
    "behind_link",
    "symlink",
    "hardlink",
)

_DIR, _FILE, _SYMLINK, _HARDLINK = "folder", "file", "symlink", "hard link"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1024 * 1024
_MAX_LINK = 4095  # PATH_MAX - 1
_MAX_HOPS = 40  # Linux's MAXSYMLINKS
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError)

# Given a symlink's clean name and target, True when the caller recreates that link itself: it is not created.
SkipSymlink = Callable[[str, str], bool]
# Given a regular file's clean name, True when it may appear again as a regular file: the last copy is written.
RepeatFile = Callable[[str], bool]


@dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may unpack to; far above any real model or environment."""

    # A full conda environment with torch and tensorflow holds ~100k files.
    members: int = 500_000
    total_bytes: int = 1 << 40  # 1 TiB uncompressed


@dataclass
class _Member:
    raw: str  # the name as written in the archive, for messages
    name: str  # clean relative POSIX path
    kind: str
    mode: int = 0o644
    size: int = 0
    mtime: float | None = None
    link: str = ""  # symlink target as written, or a hard link's clean source name
    ref: object = None  # TarInfo or ZipInfo, to read the data


def unpack(archive: Path, kind: str, dest: Path) -> None:
    """Model archives: unpack ``archive`` ("tar" or "zip") into the folder ``dest``."""
    extract(archive, dest, kind=kind)


def extract(
    archive: Path,
    dest: Path,
    *,
    kind: str = "tar",
    label: str | None = None,
    skip_symlink: SkipSymlink | None = None,
    repeat_file: RepeatFile | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen
) -> None:
    """Unpack ``archive`` into the folder ``dest`` (made if missing), or raise before anything escapes it.

    Raises UnsafePath (details: member, problem, target) for a member that could escape or clash, and
    StorageError for an archive that is unreadable or over ``limits``. On error ``dest`` may hold part of
    the archive (never anything outside it): callers unpack into a staging folder and drop it.
    """
    label = label or f"the archive {archive.name}"
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                members = _checked(_zip_members(zf, label), label, limits, skip_symlink, repeat_file)
                _write(dest, members, lambda m: zf.open(m.ref), label, limits)  # type: ignore[arg-type]
        else:
            with tarfile.open(archive, "r:*") as tar:
                members = _checked(_tar_members(tar, label), label, limits, skip_symlink, repeat_file)
                _write(dest, members, lambda m: _tar_data(tar, m), label, limits)
    except _READ_ERRORS as exc:
        raise StorageError(f"{label} is corrupt or unreadable: {exc}") from exc


def _refuse(m: _Member | str, label: str, problem: str, why: str, target: str = "") -> UnsafePath:
    raw = m.raw if isinstance(m, _Member) else m
    return UnsafePath(
        f"refusing archive member {raw!r} of {label}: {why}",
        member=raw,
        problem=problem,
        target=target,
        why=why,
    )


def _clean(raw: str, label: str, is_dir: bool) -> str | None:
    """The member's clean name; None for the root folder itself (``./`` in ``tar -C dir .``)."""
    if is_dir and not raw.startswith("/") and all(p in ("", ".") for p in raw.split("/")):
        return None
    try:
        return safe_relpath(raw, what="archive member")
    except UnsafePath as exc:
        if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", raw):
            why = "its name is absolute"
        elif ".." in raw.replace("\\", "/").split("/"):
            why = "'..' in its name leads outside the destination"
        else:
            why = "its name is empty or holds a NUL"
        raise _refuse(raw, label, NAME, why) from exc


def _tar_members(tar: tarfile.TarFile, label: str) -> Iterator[_Member]:
    for info in tar:
        if info.isdir():
            kind = _DIR
        elif info.issym():
            kind = _SYMLINK
        elif info.islnk():
            kind = _HARDLINK
        elif info.isreg():
            kind = _FILE
        else:
            what = {tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "device file", tarfile.BLKTYPE: "device file"}
            raise _refuse(
                info.name,
                label,
                SPECIAL,
                f"a {what.get(info.type, 'special member')} (tar type {info.type!r}) is never unpacked",
            )
        name = _clean(info.name, label, kind == _DIR)
        if name is None:
            continue
        m = _Member(info.name, name, kind, info.mode, info.size if kind == _FILE else 0, info.mtime, ref=info)
        if kind == _SYMLINK:
            m.link = info.linkname
        elif kind == _HARDLINK:
            m.link = _hardlink_source(m, info.linkname, label)
        yield m


def _tar_data(tar: tarfile.TarFile, m: _Member) -> IO[bytes]:
    data = tar.extractfile(m.ref)  # type: ignore[arg-type]
    if data is None:  # pragma: no cover - only for non-regular members, which never get here
        raise tarfile.ReadError(f"no data for {m.raw!r}")
    return data


def _zip_members(zf: zipfile.ZipFile, label: str) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        fmt = stat.S_IFMT(mode)
        if fmt == stat.S_IFLNK:
            kind = _SYMLINK
        elif fmt == stat.S_IFDIR or info.is_dir():
            kind = _DIR
        elif fmt in (0, stat.S_IFREG):
            kind = _FILE
        else:
            raise _refuse(
                info.filename, label, SPECIAL, "a device file, fifo or socket member is never unpacked"
            )
        name = _clean(info.filename, label, kind == _DIR)
        if name is None:
            continue
        # Archives written on Windows carry no Unix mode.
        perm = stat.S_IMODE(mode) if fmt else 0o755 if kind == _DIR else 0o644
        m = _Member(info.filename, name, kind, perm, ref=info)
        if kind == _FILE:
            m.size = info.file_size
            m.mtime = _zip_time(info)
        elif kind == _SYMLINK:
            if info.file_size > _MAX_LINK:
                raise _refuse(m, label, SYMLINK, "symlink target is too long")
            m.link = zf.read(info).decode("utf-8", "surrogateescape")
        yield m


def _zip_time(info: zipfile.ZipInfo) -> float | None:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def _hardlink_source(m: _Member, linkname: str, label: str) -> str:
    try:
        return safe_relpath(linkname, what="hard link source")
    except UnsafePath as exc:
        raise _refuse(m, label, HARDLINK, f"hard link reaches outside ({linkname!r})", linkname) from exc


def _checked(
    found: Iterator[_Member],
    label: str,
    limits: Limits,
    skip_symlink: SkipSymlink | None,
    repeat_file: RepeatFile | None,
) -> list[_Member]:
    """Every member, once the whole archive was checked; symlinks the caller recreates left out."""
    members: list[_Member] = []
    by_name: dict[str, _Member] = {}
    total = 0
    for m in found:
        if len(members) >= limits.members:
            raise StorageError(f"refusing {label}: it has more than {limits.members} members")
        total += m.size
        if total > limits.total_bytes:
            raise StorageError(f"refusing {label}: it unpacks to more than {limits.total_bytes} bytes")
        first = by_name.get(m.name)
        if first is not None:
            if first.kind == _DIR and m.kind == _DIR:
                continue  # the same folder twice (tar appends) is harmless
            if first.kind == m.kind == _FILE and repeat_file and repeat_file(m.name):
                # Only the last copy is written, once: nothing is ever written over a path.
                members[members.index(first)] = by_name[m.name] = m
                continue
            raise _refuse(
                m, label, DUPLICATE, f"the name appears twice (first as a {first.kind}, then a {m.kind})"
            )
        by_name[m.name] = m
        members.append(m)
    # Structure first: nothing may sit behind a link or a file, a hard link must name a regular member.
    for m in members:
        if m.kind != _SYMLINK:
            _check_parents(m, by_name, label)
        if m.kind == _HARDLINK and getattr(by_name.get(m.link), "kind", None) != _FILE:
            raise _refuse(
                m, label, HARDLINK, f"hard link source {m.link!r} is not a regular file of the archive"
            )
    # Then where each symlink really leads, over the archive's own links.
    skipped = {
        m.name for m in members if m.kind == _SYMLINK and skip_symlink and skip_symlink(m.name, m.link)
    }
    links = {m.name: m.link for m in members if m.kind == _SYMLINK and m.name not in skipped}
    for m in members:
        if m.name in links:
            target = m.link
            if not target or "\x00" in target or len(target) > _MAX_LINK:
                raise _refuse(m, label, SYMLINK, f"symlink target {target!r} is empty or invalid", target)
            if target.startswith("/"):
                raise _refuse(m, label, SYMLINK, f"symlink points outside (absolute: {target!r})", target)
            # Relative to the folder holding the link (itself resolved: it may sit behind another link).
            if _resolve(f"{m.name.rpartition('/')[0]}/{target}", links) is None:
                raise _refuse(m, label, SYMLINK, f"symlink points outside ({target!r})", target)
            _check_parents(m, by_name, label)
    return [m for m in members if m.name not in skipped]


def _check_parents(m: _Member, by_name: dict[str, _Member], label: str) -> None:
    parts = m.name.split("/")
    for i in range(1, len(parts)):
        parent = by_name.get("/".join(parts[:i]))
        if parent is not None and parent.kind != _DIR:
            raise _refuse(
                m, label, BEHIND_LINK, f"it would be written through the {parent.kind} {parent.raw!r}"
            )


def _resolve(name: str, links: dict[str, str]) -> str | None:
    """Where ``name`` leads below the root, following the archive's links; None if it ever leaves (or loops)."""
    pending = name.split("/")
    pending.reverse()
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        done.append(part)
        target = links.get("/".join(done))
        if target is not None:
            hops += 1
            if hops > _MAX_HOPS or target.startswith("/"):
                return None
            done.pop()
            pending.extend(reversed(target.split("/")))
    return "/".join(done)


def _write(
    dest: Path, members: list[_Member], open_data: Callable[[_Member], IO[bytes]], label: str, limits: Limits
) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(dest, _DIR_FLAGS)
    except OSError as exc:
        raise StorageError(f"cannot unpack {label} into {dest}: {exc.strerror or exc}") from exc
    try:
        folders = _Folders(root_fd)
        try:
            for m in members:
                if m.kind == _DIR:
                    with _writing(m, label):
                        folders.make_dir(m.name, (m.mode & 0o755) | 0o700)
            written = 0
            for m in members:
                if m.kind == _FILE:
                    with open_data(m) as data:
                        written += _write_file(folders, m, data, label, limits.total_bytes - written)
            for m in members:
                if m.kind == _HARDLINK:
                    with _writing(m, label):
                        folders.link(m.link, m.name)
            for m in members:  # last: no folder or file is ever created after a link exists
                if m.kind == _SYMLINK:
                    with _writing(m, label):
                        folders.symlink(m.link, m.name)
        finally:
            folders.close()
    finally:
        os.close(root_fd)
    real_root = os.path.realpath(dest)
    for m in members:
        if m.kind == _SYMLINK:
            real = os.path.realpath(os.path.join(real_root, m.name))
            if real != real_root and not real.startswith(real_root + os.sep):
                raise _refuse(
                    m, label, SYMLINK, f"symlink points outside ({m.link!r} resolves to {real})", m.link
                )


@contextlib.contextmanager
def _writing(m: _Member, label: str) -> Iterator[None]:
    """Turn a failed write into our errors: a clash or a link in the way is unsafe, the rest a StorageError."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise _refuse(
                m, label, DUPLICATE, "its path already exists (it clashes with another member)"
            ) from exc
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(m, label, BEHIND_LINK, "it would be written through a link or a file") from exc
        raise StorageError(f"cannot unpack member {m.raw!r} of {label}: {exc.strerror or exc}") from exc


def _write_file(folders: _Folders, m: _Member, data: IO[bytes], label: str, budget: int) -> int:
    with _writing(m, label):
        parent, base = folders.parent_of(m.name)
        out = open(os.open(base, _FILE_FLAGS, 0o600, dir_fd=parent), "wb")  # noqa: SIM115 - closed below
    written = 0
    with out:
        while chunk := data.read(_CHUNK):  # a read error is a corrupt archive: handled by extract()
            written += len(chunk)
            if written > budget:
                raise StorageError(
                    f"refusing {label}: it unpacks to more bytes than allowed (at member {m.raw!r})"
                )
            with _writing(m, label):
                out.write(chunk)
        with _writing(m, label):
            out.flush()
            # Keep the executable bits; never setuid/setgid/sticky, group- or world-writable.
            os.fchmod(out.fileno(), (m.mode & 0o755) | 0o600)
            if m.mtime is not None and abs(m.mtime) < 1 << 40:  # .pyc files are checked against it
                os.utime(out.fileno(), (m.mtime, m.mtime))
    return written


class _Folders:
    """Folders below a root fd, opened one component at a time, never through a link."""

    def __init__(self, root_fd: int) -> None:
        self._root = root_fd
        self._last: tuple[str, int] | None = None  # archives list a folder's files together

    def close(self) -> None:
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def _open(self, rel: str, create: bool, mode: int | None = None) -> int:
        fd = os.dup(self._root)
        try:
            for part in rel.split("/") if rel else []:
                made = False
                if create:
                    try:
                        os.mkdir(part, 0o700, dir_fd=fd)
                        made = True
                    except FileExistsError:
                        pass
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = sub
                if made:
                    os.fchmod(fd, 0o755)
            if mode is not None:
                os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def make_dir(self, rel: str, mode: int) -> None:
        os.close(self._open(rel, True, mode))

    def parent_of(self, rel: str) -> tuple[int, str]:
        """(fd of the folder holding ``rel``, made if missing; ``rel``'s last component); fd owned here."""
        parent, _, base = rel.rpartition("/")
        if self._last is None or self._last[0] != parent:
            fd = self._open(parent, True)
            self.close()
            self._last = (parent, fd)
        return self._last[1], base

    def symlink(self, target: str, rel: str) -> None:
        parent, base = self.parent_of(rel)
        os.symlink(target, base, dir_fd=parent)

    def link(self, source: str, rel: str) -> None:
        src_parent, _, src_base = source.rpartition("/")
        src_fd = self._open(src_parent, False)
        try:
            dst_fd, base = self.parent_of(rel)
            os.link(src_base, base, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
        finally:
            os.close(src_fd)
