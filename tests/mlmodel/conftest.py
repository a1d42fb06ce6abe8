"""Fixtures for the mlmodel tests: literal MLmodel files of many MLflow versions, model folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from mlmodel_cases import MLMODELS, mlmodel_text


@pytest.fixture
def make_model_dir(tmp_path: Path) -> Callable[..., Path]:
    """Build a model folder: an MLmodel (literal name or text) plus files ("a/b.txt") and folders ("c/")."""

    def make(mlmodel: str, *entries: str, root: str = "model") -> Path:
        folder = tmp_path / root
        folder.mkdir(parents=True, exist_ok=True)
        text = mlmodel_text(mlmodel) if (MLMODELS / f"{mlmodel}.yaml").is_file() else mlmodel
        (folder / "MLmodel").write_text(text)
        for entry in entries:
            path = folder / entry
            if entry.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"contents of {entry}\n")
        return folder

    return make
