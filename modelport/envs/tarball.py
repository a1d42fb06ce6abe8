"""Unpack a packed environment (conda-pack or venv-pack layout) safely, and relocate it in place.

Unpacking is the shared extractor (modelport.storage.archives); links to the base interpreter are
recreated here, not trusted.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from modelport.envs.build import Progress, run_tool
from modelport.envs.config import EnvSettings
from modelport.envs.pythons import choose, local_pythons
from modelport.errors import EnvironmentError_, StorageError, UnsafePath
from modelport.storage import archives
from modelport.storage.archives import extract

_INTERPRETER_LINK = re.compile(r"^(.*/)?bin/python(\d+(\.\d+)?)?$")
_PYVENV_CFG = re.compile(r"([^/]+/)?pyvenv\.cfg")
_SHEBANG = re.compile(rb"^#!\s*(\S*/bin/python[\d.]*)([^\n]*)\n")


def unpack(archive: Path, dest: Path) -> None:
    """Extract `archive` into the new folder `dest` with the shared safe extractor; on error `dest` is removed.

    Env-specific allowances: absolute `bin/python*` links (to the base interpreter) are not created,
    since relocate() recreates them from pyvenv.cfg; pyvenv.cfg may come twice (venv-pack adds it
    once from the folder listing and once rewritten; the last copy counts, as with tar).
    """
    dest.mkdir(parents=True)
    label = f"the environment tarball {archive}"
    try:
        extract(
            archive,
            dest,
            kind="tar",
            label=label,
            skip_symlink=_recreated_by_relocate,
            repeat_file=_written_twice_by_venv_pack,
        )
    except BaseException as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, UnsafePath):
            raise UnsafePath(_env_wording(label, exc), **exc.details) from exc
        if isinstance(exc, StorageError):
            raise EnvironmentError_(exc.message) from exc
        raise


def _recreated_by_relocate(name: str, target: str) -> bool:
    return bool(_INTERPRETER_LINK.match(name)) and os.path.isabs(target)


def _written_twice_by_venv_pack(name: str) -> bool:
    return _PYVENV_CFG.fullmatch(name) is not None


_WORDING = {
    archives.NAME: "has a member outside its folder",
    archives.SPECIAL: "holds a device or pipe",
    archives.DUPLICATE: "holds the same member name twice",
    archives.BEHIND_LINK: "writes through a link out of its folder",
    archives.SYMLINK: "has a link leading outside it",
    archives.HARDLINK: "has a hard link outside it",
}


def _env_wording(label: str, exc: UnsafePath) -> str:
    member = exc.details.get("member", "?")
    target = exc.details.get("target")
    words = _WORDING.get(str(exc.details.get("problem")), "has an unsafe member")
    link = f" -> {target}" if target else ""
    return f"{label} {words}: {member}{link} ({exc.details.get('why', exc.message)})"


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
