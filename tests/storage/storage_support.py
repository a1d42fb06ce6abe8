"""Helpers the storage tests share: compare trees byte for byte, build settings from an environment."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from modelport.storage.config import StorageSettings


def tree(root: Path) -> dict[str, bytes]:
    """Every file below root, by relative path, with its bytes (folders implied)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def settings_for(env: dict[str, str], **overrides: object) -> StorageSettings:
    return replace(StorageSettings.from_environ(env), **overrides)  # type: ignore[arg-type]
