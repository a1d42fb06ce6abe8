"""Keys of built environments in the shared content-addressed cache (modelport.cache, area ``envs``).

An environment is reused only once its ready marker exists, written after it was built and verified.
"""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig

from modelport.cache import CacheHit, get_or_build, read_ready

__all__ = ["RECIPE", "CacheHit", "cache_key", "get_or_build", "read_ready"]

# Bump when the way environments are built changes, so old entries are not reused.
# 2: one cache module for models and environments (marker beside the entry), uv's cache beside it.
RECIPE = "2"


def cache_key(kind: str, *parts: str) -> str:
    """Hash of what decides an environment's contents, plus the platform it runs on."""
    platform = f"{sysconfig.get_platform()}-{sys.implementation.name}"
    blob = json.dumps([RECIPE, kind, platform, *parts])
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"
