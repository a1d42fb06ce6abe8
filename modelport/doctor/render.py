"""The report as a table (rich) for people, or as one JSON object for pipelines."""

from __future__ import annotations

import json
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelport.doctor.report import FAIL, OK, SKIP, WARN, Report

STYLES = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}


def render_json(report: Report, out: TextIO) -> None:
    out.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")


def render_table(report: Report, out: TextIO, width: int | None = None) -> None:
    console = Console(file=out, width=width, soft_wrap=False, highlight=False)
    table = Table(title=f"modelport doctor {report.model}", title_justify="left", show_lines=True)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("finding", ratio=3, overflow="fold")
    fixes = any(check.fix for check in report.checks)
    if fixes:
        table.add_column("fix", ratio=2, overflow="fold")
    table.add_column("time", justify="right", no_wrap=True)
    for check in report.checks:
        row: list[str | Text] = [
            check.id,
            Text(check.status, style=STYLES.get(check.status, "")),
            check.message,
        ]
        table.add_row(*row, *([check.fix] if fixes else []), f"{check.seconds:.2f} s")
    console.print(table)
    verdict = {OK: "ready to deploy", WARN: "deployable, with warnings", FAIL: "will not serve as it is"}
    console.print(Text(f"{report.status}: {verdict[report.status]}", style=STYLES[report.status]))
