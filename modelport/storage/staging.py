"""Atomic placement: fetch into a staging folder on DEST's filesystem, then rename it into place.

A failed or interrupted fetch removes the staging folder and leaves DEST exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from modelport.errors import StorageError

STAGING_MARK = ".modelport-staging-"


def _is_mount(dest: Path) -> bool:
    # KServe mounts an emptyDir at /mnt/models: it cannot be renamed over, and its parent is another filesystem.
    try:
        return os.path.ismount(dest) or dest.stat().st_dev != dest.parent.stat().st_dev
    except OSError:
        return False


def new_staging(dest: Path) -> Path:
    """Create an empty staging folder that can be renamed onto ``dest`` (or into it, for a mount point)."""
    if dest.exists() and not dest.is_dir():
        raise StorageError(f"destination {dest} exists and is not a folder")
    tag = uuid.uuid4().hex[:12]
    if dest.is_dir() and _is_mount(dest):
        stage = dest / f"{STAGING_MARK}{tag}"
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = dest.parent / f".{dest.name}{STAGING_MARK}{tag}"
    stage.mkdir()
    return stage


def discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)


def commit(stage: Path, dest: Path) -> None:
    """Move the finished tree at ``stage`` to ``dest``; replaces an existing folder whole."""
    if stage.parent == dest:
        # Inside a mount point: move the entries in (each rename atomic), then drop the shell.
        for entry in stage.iterdir():
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.rename(entry, target)
        stage.rmdir()
        return
    try:
        # rename(2) replaces an empty folder atomically.
        os.rename(stage, dest)
        return
    except OSError:
        if not dest.is_dir():
            raise
    # DEST holds something: swap it out, swap the new tree in, then drop the old one.
    old = dest.parent / f".{dest.name}.modelport-old-{uuid.uuid4().hex[:12]}"
    os.rename(dest, old)
    try:
        os.rename(stage, dest)
    except OSError:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
