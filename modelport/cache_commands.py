"""`modelport cache list` and `modelport cache prune`: what the CLI calls, callable from tests."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from modelport import cache
from modelport.errors import ModelportError
from modelport.settings import Settings


def list_command(settings: Settings, as_json: bool = False, out: TextIO | None = None) -> int:
    """Print the cache's entries, least recently used first, with their size and whether in use."""
    out = out or sys.stdout
    entries = cache.list_entries(settings.cache_dir)
    if as_json:
        rows = [
            {
                "area": e.area,
                "key": e.key,
                "path": str(e.path),
                "bytes": e.bytes,
                "last_used": e.last_used,
                "in_use": e.in_use,
                "what": _what(e),
            }
            for e in entries
        ]
        out.write(json.dumps({"cache_dir": str(settings.cache_dir), "entries": rows}, indent=2) + "\n")
        return 0
    head = ("area", "key", "size", "last used", "in use", "what")
    now = time.time()
    rows_t = [head] + [
        (e.area, e.key, _size(e.bytes), _ago(now - e.last_used), "yes" if e.in_use else "no", _what(e))
        for e in entries
    ]
    widths = [max(len(r[i]) for r in rows_t) for i in range(len(head))]
    lines = [f"cache: {settings.cache_dir}"]
    for i, row in enumerate(rows_t):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    total = sum(e.bytes for e in entries)
    budget = f" of {_size(settings.cache_max_bytes)}" if settings.cache_max_bytes is not None else ""
    lines.append(f"{len(entries)} entries, {_size(total)}{budget}")
    out.write("\n".join(lines) + "\n")
    return 0


def prune_command(settings: Settings, max_bytes: str | None, out: TextIO | None = None) -> int:
    """Evict least recently used entries not in use down to --max-bytes (default: the configured
    budget, else every entry not in use)."""
    out = out or sys.stdout
    if max_bytes is not None:
        try:
            budget = cache.parse_bytes(max_bytes)
        except ValueError as exc:
            raise ModelportError(f"--max-bytes: {exc}") from exc
    else:
        budget = settings.cache_max_bytes if settings.cache_max_bytes is not None else 0
    result = cache.prune(settings.cache_dir, budget)
    for e in result.removed:
        out.write(f"removed {e.area}/{e.key} ({_size(e.bytes)}, {_what(e)})\n")
    for e in result.busy:
        out.write(f"kept {e.area}/{e.key} ({_size(e.bytes)}): in use\n")
    for name in result.leftovers:
        out.write(f"removed unfinished {name}\n")
    out.write(
        f"cache {settings.cache_dir}: {_size(result.total_before)} -> {_size(result.total_after)} "
        f"(budget {_size(budget)})\n"
    )
    return 0


def _what(e: cache.CacheEntry) -> str:
    meta = e.meta
    if e.area == "models":
        return str(meta.get("uri", ""))
    versions = meta.get("versions") or {}
    python = versions.get("python", "") if isinstance(versions, dict) else ""
    mlflow = versions.get("mlflow", "") if isinstance(versions, dict) else ""
    reqs = meta.get("requirements") or []
    shown = ", ".join(str(r) for r in reqs[:3]) + (" ..." if len(reqs) > 3 else "")
    parts = [
        str(meta.get("kind", "env")),
        f"Python {python}" if python else "",
        f"mlflow {mlflow}" if mlflow else "",
    ]
    return " ".join(p for p in parts if p) + (f": {shown}" if shown else "")


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"
