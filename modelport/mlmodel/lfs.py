"""Git LFS pointers sitting where a model file should be: a clone made without `git lfs pull`.

A pointer is a small text file (spec v1: "version https://git-lfs.github.com/spec/v1", an oid, a
size); read as a pickle, YAML or weights it gives errors that never say what happened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

_HEADER = b"version https://git-lfs.github.com/spec/"
# The spec caps a pointer at 1024 bytes; anything larger is a real file and is never read here.
MAX_POINTER_BYTES = 1024
_SIZE = re.compile(rb"^size (\d+)$", re.M)


def pointer_size(path: Path) -> int | None:
    """The size of the object a Git LFS pointer at `path` stands for; None if it is no pointer."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_POINTER_BYTES:
            return None
        with open(path, "rb") as f:
            head = f.read(MAX_POINTER_BYTES)
    except OSError:
        return None
    if not head.startswith(_HEADER):
        return None
    found = _SIZE.search(head)
    return int(found.group(1)) if found else -1


def describe_pointer(rel: str, size: int) -> str:
    bytes_ = f" (the object is {size} bytes)" if size >= 0 else ""
    return f"{rel} is a Git LFS pointer, not the file: the LFS object was not fetched{bytes_}"


HINT = "run `git lfs pull` in the clone (or `git lfs install` before cloning) and copy the model again"


def find_pointers(root: Path, rels: Iterable[str]) -> list[str]:
    """Sentences naming each LFS pointer among `rels` (files, or folders searched one level per
    entry up to a bound), relative to `root`."""
    found: list[str] = []
    for rel in rels:
        target = root / rel
        if target.is_dir():
            for sub in _files_under(target):
                size = pointer_size(sub)
                if size is not None:
                    found.append(describe_pointer(sub.relative_to(root).as_posix(), size))
        else:
            size = pointer_size(target)
            if size is not None:
                found.append(describe_pointer(rel, size))
    return found


def _files_under(folder: Path, limit: int = 2000) -> list[Path]:
    # Only small files can be pointers; a bounded walk keeps huge folders cheap.
    out: list[Path] = []
    for current, _dirs, files in os.walk(folder):
        for name in files:
            out.append(Path(current) / name)
            if len(out) >= limit:
                return out
    return out
