"""`modelport env diff` and `modelport env build`: what the CLI calls, callable from tests.

Both print to stdout/stderr and return the exit code; errors rise as ModelportError to the CLI.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from modelport.envs.drift import DriftReport
from modelport.envs.pack import pack_env
from modelport.envs.requirements import read_model_env
from modelport.envs.resolve import build_env, drift_report, local_python
from modelport.settings import Settings
from modelport.storage import resolve_model


def diff_command(
    uri: str, settings: Settings, python: str | None, as_json: bool, out: TextIO | None = None
) -> int:
    """Print the model's requirements against an interpreter; 1 when a difference blocks."""
    out = out or sys.stdout
    model_dir = resolve_model(uri, settings.storage, settings.cache_dir)
    report = drift_report(read_model_env(model_dir), python or local_python(settings), settings)
    if as_json:
        out.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        out.write(format_table(report) + "\n")
    return 1 if report.blocking else 0


def format_table(report: DriftReport) -> str:
    head = ("requirement", "wanted", "installed", "difference", "matters", "verdict")
    rows = [head] + [
        (
            r.name,
            r.wanted,
            r.installed or "-",
            r.kind,
            "yes" if r.matters else "no",
            "BLOCKS" if r.blocking else ("warn" if r.kind not in ("ok", "skipped") else "ok"),
        )
        for r in report.rows
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"interpreter: {report.python}"]
    if report.inferred:
        lines.append(
            "requirements inferred from MLmodel (the model carries no environment files): "
            + ", ".join(report.inferred)
        )
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    blocking = report.blocking
    if blocking:
        lines.append(f"blocking drift ({len(blocking)}): {report.summary(limit=len(blocking))}")
    else:
        lines.append("no blocking drift: the model can run under this interpreter")
    return "\n".join(lines)


def build_command(uri: str, settings: Settings, pack: str | None, python: str | None) -> int:
    """Build the model's environment into the cache (and pack it when asked); print where it is."""
    _log_to_stderr()
    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        if tty:
            print(f"  \x1b[2m{line}\x1b[0m", file=sys.stderr)

    model_dir = resolve_model(uri, settings.storage, settings.cache_dir)
    interp = build_env(model_dir, settings, progress, base_python=python)
    print(interp.reason, file=sys.stderr)
    print(interp.python)
    if pack and interp.prefix:
        start = time.monotonic()
        size = pack_env(Path(interp.prefix), Path(pack))
        print(
            f"packed {interp.prefix} into {pack} ({size / 1e6:.1f} MB) in {time.monotonic() - start:.1f} s",
            file=sys.stderr,
        )
    return 0


def _log_to_stderr() -> None:
    logger = logging.getLogger("modelport.envs")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("modelport: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
