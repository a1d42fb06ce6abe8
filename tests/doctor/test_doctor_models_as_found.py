"""doctor on models as people have them: no environment files (inferred), Git LFS pointers, an
R-only MLmodel."""

from __future__ import annotations

import shutil
from pathlib import Path

from doctor_support import doctor, statuses

LFS = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 2048\n"
)


def _bare(iris_model: Path, tmp_path: Path) -> Path:
    bare = tmp_path / "bare"
    bare.mkdir()
    for entry in iris_model.iterdir():
        if entry.name not in {"requirements.txt", "python_env.yaml", "conda.yaml"}:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, bare / entry.name)
    return bare


def test_environment_inferred_from_mlmodel_is_said(iris_model: Path, tmp_path: Path) -> None:
    report = doctor(_bare(iris_model, tmp_path), tmp_path / "cache")
    env = report.check("environment")
    assert env.status == "warn", env.message
    assert "its environment is inferred from MLmodel: scikit-learn==" in env.message
    assert env.details["inferred"][0].startswith("scikit-learn==")
    assert "environment files" in env.fix


def test_lfs_pointer_is_named_with_its_fix(iris_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "clone"
    shutil.copytree(iris_model, model)
    pickled = next(p for p in model.iterdir() if p.name.startswith("model."))
    pickled.write_text(LFS)
    report = doctor(model, tmp_path / "cache")
    layout = report.check("layout")
    assert layout.status == "fail"
    assert f"{pickled.name} is a Git LFS pointer" in layout.message and "2048 bytes" in layout.message
    assert "git lfs pull" in layout.fix


def test_r_only_model_fails_naming_its_flavors(tmp_path: Path) -> None:
    model = tmp_path / "r"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  crate:\n    version: 0.1.0\n    model: crate.bin\n")
    (model / "crate.bin").write_bytes(b"X\n")
    report = doctor(model, tmp_path / "cache")
    assert statuses(report)["mlmodel"] == "fail"
    assert "no python_function flavor" in report.check("mlmodel").message
    assert report.exit_code != 0
