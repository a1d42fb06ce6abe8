"""What is refused before anything starts: a model with no python_function flavor, and Git LFS
pointers standing where the model's files (or its MLmodel) should be."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import LayoutError, ModelLoadError
from modelport.mlmodel import check_layout, parse_mlmodel, read_model_spec, require_python_function
from modelport.mlmodel.lfs import pointer_size

# What `crate()` in R's mlflow package writes: no python_function.
R_ONLY = """artifact_path: model
flavors:
  crate:
    version: 0.1.0
    model: crate.bin
mlflow_version: 2.9.2
run_id: 7d6c5b4a39281706f5e4d3c2b1a09f8e
utc_time_created: '2023-12-20 10:11:12.000000'
"""

LFS = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 1048576\n"
)


def test_r_only_model_is_refused_naming_its_flavors() -> None:
    spec = parse_mlmodel(R_ONLY, path="/models/r")
    with pytest.raises(ModelLoadError) as info:
        require_python_function(spec)
    assert "no python_function flavor" in info.value.message
    assert "its flavors: crate" in info.value.message
    assert info.value.details["flavors"] == ["crate"]


def test_several_flavors_without_pyfunc_are_all_named() -> None:
    spec = parse_mlmodel("flavors:\n  mleap: {mleap_version: 0.20.0, model_data: mleap/model}\n  spark: {}\n")
    with pytest.raises(ModelLoadError, match="its flavors: mleap, spark"):
        require_python_function(spec)


def test_pyfunc_model_passes(make_model_dir) -> None:
    require_python_function(read_model_spec(make_model_dir("sklearn-1.14", "model.pkl")))


def test_lfs_pointer_in_place_of_the_model_file(make_model_dir) -> None:
    folder = make_model_dir("sklearn-1.14", "conda.yaml")
    (folder / "model.pkl").write_text(LFS)
    with pytest.raises(LayoutError) as info:
        check_layout(folder, read_model_spec(folder))
    message = info.value.message
    assert "model.pkl is a Git LFS pointer" in message
    assert "the LFS object was not fetched (the object is 1048576 bytes)" in message
    assert "git lfs pull" in message
    assert info.value.details["lfs_pointers"] is True


def test_lfs_pointer_inside_a_model_folder(make_model_dir) -> None:
    folder = make_model_dir("pytorch-2.16-tensor", "data/pickle_module_info.txt")
    (folder / "data" / "model.pth").write_text(LFS)
    with pytest.raises(LayoutError, match=r"data/model\.pth is a Git LFS pointer"):
        check_layout(folder, read_model_spec(folder))


def test_lfs_pointer_in_place_of_mlmodel(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(LFS)
    with pytest.raises(
        ModelLoadError, match="MLmodel is a Git LFS pointer, not the file: the LFS object was not fetched"
    ):
        read_model_spec(tmp_path)


def test_a_real_file_that_mentions_lfs_is_not_a_pointer(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("see version https://git-lfs.github.com/spec/v1\n")
    big = tmp_path / "big.bin"
    big.write_bytes(LFS.encode() + b"\0" * 2000)  # over the spec's 1024-byte cap: a real file
    assert pointer_size(text) is None and pointer_size(big) is None
    pointer = tmp_path / "p"
    pointer.write_text(LFS)
    assert pointer_size(pointer) == 1048576


def _refused(folder: Path, tmp_path: Path) -> str:
    import time

    from tests.conftest import start_server

    # --env uv: under auto/local a speculative worker template starts importing mlflow while the
    # model is read (workers/template.py, launch_early); with uv nothing may start before the refusal.
    server = start_server(folder, "--env", "uv", tmp=tmp_path / "run", expect_ready=False)
    try:
        deadline = time.monotonic() + 120
        while server.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.proc.returncode == 2, server.log()
        return server.log()
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_refuses_r_only_model_before_any_worker(tmp_path: Path) -> None:
    folder = tmp_path / "rmodel"
    folder.mkdir()
    (folder / "MLmodel").write_text(R_ONLY)
    (folder / "crate.bin").write_bytes(b"X\n\x00\x00\x00\x03")
    log = _refused(folder, tmp_path)
    assert "no python_function flavor" in log and "its flavors: crate" in log
    assert "worker" not in log.lower() and "environment:" not in log


@pytest.mark.slow
def test_serve_names_an_lfs_pointer(make_model_dir, tmp_path: Path) -> None:
    folder = make_model_dir("sklearn-1.14", "conda.yaml")
    (folder / "model.pkl").write_text(LFS)
    log = _refused(folder, tmp_path)
    assert "model.pkl is a Git LFS pointer" in log and "git lfs pull" in log
