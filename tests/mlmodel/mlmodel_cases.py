"""Literal MLmodel files of many MLflow versions, kept in mlmodels/ next to this module."""

from __future__ import annotations

from pathlib import Path

MLMODELS = Path(__file__).parent / "mlmodels"


def mlmodel_text(name: str) -> str:
    return (MLMODELS / f"{name}.yaml").read_text()
