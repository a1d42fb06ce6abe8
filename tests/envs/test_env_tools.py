"""How modelport runs uv and conda: uv's variables, the process group, --env conda without conda,
conda.yaml mapping. Fast: nothing is built."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from envs_support import make_settings

from modelport.envs import conda, resolve_interpreter
from modelport.envs.build import link_mode, run_tool, tool_settings, uv_flags
from modelport.errors import EnvironmentError_, ModelportError
from modelport.settings import build_settings


def test_uv_cache_sits_beside_the_environments_and_links_when_it_can(tmp_path: Path) -> None:
    settings = build_settings({"cache_dir": str(tmp_path / "c")}, {"HOME": str(tmp_path)})
    env = tool_settings(settings.env, settings.cache_dir).process_environ
    assert env["UV_CACHE_DIR"] == str(tmp_path / "c" / "uv")
    assert env["UV_LINK_MODE"] == "hardlink"
    assert env["UV_PYTHON_DOWNLOADS"] == "automatic"
    assert "UV_OFFLINE" not in env
    assert not (tmp_path / "c").exists()  # deciding creates nothing


@pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat("/tmp").st_dev,
    reason="needs /dev/shm on a filesystem of its own",
)
def test_another_filesystem_means_copies(tmp_path: Path) -> None:
    assert link_mode(Path("/dev/shm/modelport-test-uv"), tmp_path / "envs") == "copy"


def test_offline_and_python_downloads_settings(tmp_path: Path) -> None:
    base = {"HOME": str(tmp_path), "UV_PYTHON_DOWNLOADS": "manual", "UV_LINK_MODE": "symlink"}
    s = build_settings({"cache_dir": str(tmp_path)}, base)
    assert s.env.python_downloads == "manual" and not s.env.offline
    s = build_settings({"cache_dir": str(tmp_path)}, {**base, "MODELPORT_PYTHON_DOWNLOADS": "never"})
    assert s.env.python_downloads == "never"
    s = build_settings({"cache_dir": str(tmp_path), "offline": True, "python_downloads": "automatic"}, base)
    env = tool_settings(s.env, s.cache_dir)
    assert env.process_environ["UV_PYTHON_DOWNLOADS"] == "never"  # offline wins
    assert env.process_environ["UV_OFFLINE"] == "1"
    assert uv_flags(env) == ["--link-mode", "symlink", "--offline"]  # the user's link mode is kept
    with pytest.raises(ModelportError, match="python downloads"):
        build_settings({"cache_dir": str(tmp_path), "python_downloads": "sometimes"}, base)
    s = build_settings({"cache_dir": str(tmp_path), "cache_max_bytes": "2G"}, base)
    assert s.cache_max_bytes == 2_000_000_000


def test_a_cancelled_tool_takes_its_whole_process_group_with_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def progress(line: str) -> None:
        if line.startswith("started"):
            raise KeyboardInterrupt

    cmd = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo started; wait"]
    with pytest.raises(KeyboardInterrupt):
        run_tool(cmd, "sleeper", dict(os.environ), progress)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_a_tool_that_does_not_exist_is_a_plain_error() -> None:
    with pytest.raises(EnvironmentError_, match="cannot run nothing-here: .*No such file"):
        run_tool(["/nonexistent/tool"], "nothing-here", dict(os.environ), lambda _l: None)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_env_conda_without_a_conda_executable(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "MLmodel").write_text(
        "flavors:\n  python_function:\n    env: conda.yaml\n    loader_module: mlflow.sklearn\n"
        "mlflow_version: 1.14.1\n"
    )
    (model / "conda.yaml").write_text("dependencies:\n- python=3.8.5\n- pip:\n  - mlflow\n")
    environ = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    assert conda.conda_executable(environ["PATH"]) is None  # this machine has none
    with pytest.raises(EnvironmentError_, match="--env conda needs micromamba, mamba or conda on PATH"):
        resolve_interpreter(model, make_settings(tmp_path / "cache", "conda", environ=environ))


@pytest.mark.parametrize(
    ("spec", "mapped"),
    [
        ("scikit-learn=0.23.2", "scikit-learn==0.23.2"),
        ("numpy=1.19", "numpy==1.19.*"),
        ("numpy==1.19.2", "numpy==1.19.2"),
        ("conda-forge::pandas=1.1.3=py38hb1e8313_0", "pandas==1.1.3"),
        ("pytorch=1.13.1", "torch==1.13.1"),
        ("py-xgboost>=1.5,<2", "xgboost<2,>=1.5"),
        ("lightgbm 3.3.2 py38h_0", "lightgbm==3.3.2"),
        ("cloudpickle", "cloudpickle"),
        ("scipy 1.5.*", "scipy==1.5.*"),
    ],
)
def test_conda_specs_map_to_pypi(spec: str, mapped: str) -> None:
    env = conda.read_conda({"dependencies": [spec]})
    assert env.mapped == [mapped] and env.unmapped == []


def test_conda_packages_that_cannot_map_are_named() -> None:
    env = conda.read_conda(
        {
            "dependencies": [
                "python=3.8.5",
                "pip",
                "mkl",
                "libgcc-ng",
                "cudatoolkit=11.7",
                "numpy[version='>=1']",
            ]
        }
    )
    assert env.python == "3.8.5" and env.mapped == []
    assert env.unmapped == [
        "mkl (not a Python package on PyPI)",
        "libgcc-ng (not a Python package on PyPI)",
        "cudatoolkit (not a Python package on PyPI)",
        "numpy[version='>=1'] (not a conda package spec modelport can read)",
    ]


def test_offline_message_names_what_is_missing_and_where_it_looked(tmp_path: Path) -> None:
    from modelport.envs.build import offline_message
    from modelport.envs.requirements import ModelEnv

    model = ModelEnv(
        tmp_path, None, None, None, "sklearn", (), (), (), (), (), None, find_links=("/w/model",)
    )
    settings = tool_settings(
        build_settings({"cache_dir": str(tmp_path), "find_links": "/w/a"}, {}).env, tmp_path
    )
    uv = (
        "error: No solution found when resolving dependencies\n  cause: Because scikit-learn was not found in "
        "the cache and you require scikit-learn==1.3.2, and joblib was not found in the cache ..."
    )
    first = offline_message(uv, model, settings).split("\n")[0]
    assert first.startswith(
        "offline build: scikit-learn, joblib are neither in the wheelhouse (/w/a, /w/model)"
    )
    assert f"nor in uv's cache ({tmp_path / 'uv'})" in first
