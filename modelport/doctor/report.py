"""What a check finds: a status, a message naming the cause, the fix, and details for machines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_RANK = {SKIP: 0, OK: 1, WARN: 2, FAIL: 3}


@dataclass
class CheckResult:
    id: str
    status: str
    message: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        message = self.message + (f" Fix: {self.fix}" if self.fix else "")
        details = {**self.details, "seconds": round(self.seconds, 3)}
        if self.fix:
            details["fix"] = self.fix
        return {"id": self.id, "status": self.status, "message": message, "details": details}


def worst(statuses: list[str]) -> str:
    """The report's status: the worst of its checks; skipped checks count as nothing."""
    found = max(statuses, key=_RANK.__getitem__, default=OK)
    return OK if found == SKIP else found


@dataclass
class Report:
    model: str
    checks: list[CheckResult]
    # The command itself could not run (the model URI is unreadable): exit status 2.
    unusable: bool = False

    @property
    def status(self) -> str:
        return worst([c.status for c in self.checks])

    @property
    def exit_code(self) -> int:
        if self.unusable:
            return 2
        return 1 if self.status == FAIL else 0

    def check(self, check_id: str) -> CheckResult:
        return next(c for c in self.checks if c.id == check_id)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "status": self.status, "checks": [c.to_dict() for c in self.checks]}
