"""`modelport doctor`: what the CLI calls, callable from tests; returns the exit status (0, 1, 2)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

from modelport.doctor.context import Options
from modelport.doctor.render import render_json, render_table
from modelport.doctor.runner import run_doctor
from modelport.settings import Settings


def doctor_command(
    options: Options,
    settings: Settings,
    environ: Mapping[str, str],
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    report = run_doctor(options, settings, environ)
    if as_json:
        render_json(report, out)
    else:
        render_table(report, out)
    return report.exit_code
