"""Write a built environment as a relocatable tarball that `--env tarball` accepts.

The environment was created with `uv venv --relocatable`, so its scripts find their Python
by relative path; the tarball is the folder as it is (the cache's marker lives beside it).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from modelport.errors import EnvironmentError_

# gzip level 1 packs a 400 MB environment ~3x faster than level 6 for ~10% more bytes
# (docs/decisions-envs.md); unpacking speed is the same.
COMPRESS_LEVEL = 1


def pack_env(prefix: Path, out: Path, compresslevel: int = COMPRESS_LEVEL) -> int:
    """Pack `prefix` into `out` (.tar.gz); written beside it and renamed, so never half there."""
    if not (prefix / "pyvenv.cfg").is_file():
        raise EnvironmentError_(f"{prefix} is not a virtual environment (no pyvenv.cfg)")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w:gz", compresslevel=compresslevel) as tar:
            for path in sorted(prefix.iterdir()):
                tar.add(path, arcname=path.name, recursive=True, filter=_clean_member)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EnvironmentError_(f"cannot write the environment tarball {out}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out.stat().st_size


def _clean_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owner names of the build machine mean nothing where the tarball is unpacked.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
