"""``modelport doctor``: know before deploying whether a model will serve, where, and why not.

One small module per check (fetch, mlmodel, layout, signature, environment, smoke, kserve), run in
order by ``runner`` over a shared ``Context``; ``render`` prints the table or the JSON object.
"""

from __future__ import annotations

from modelport.doctor.context import Options
from modelport.doctor.report import CheckResult, Report
from modelport.doctor.runner import run_doctor

__all__ = ["CheckResult", "Options", "Report", "run_doctor"]
