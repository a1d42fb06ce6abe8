"""Real environments built with uv from the package index: auto, local, uv and path policies, faults.

Slow: each build installs a full MLflow stack (seconds with uv's cache warm in .cache/uv).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from envs_support import cache_leftovers, make_settings, predict_with, uv_environ

from modelport.envs import Interpreter, resolve_interpreter
from modelport.errors import EnvironmentError_

pytestmark = pytest.mark.slow


def test_auto_runs_an_old_model_in_its_own_env_with_equal_predictions(
    env_29: Interpreter, model_29: tuple[Path, dict], env_cache: Path
) -> None:
    model_dir, expected = model_29
    assert env_29.prefix and env_29.python.startswith(str(env_cache))
    assert env_29.reason.startswith("auto: mlflow 2.9.2 wanted, 3.17.2 installed")
    assert "scikit-learn 1.3.2 wanted" in env_29.reason and "built uv env at" in env_29.reason
    got = predict_with(env_29.python, model_dir)
    assert got["mlflow"] == "2.9.2"
    assert got["pred"] == expected["pred"] and got["proba"] == expected["proba"]


def test_a_cached_env_starts_with_no_install_step(
    env_29: Interpreter, model_29: tuple[Path, dict], env_cache: Path
) -> None:
    start = time.monotonic()
    again = resolve_interpreter(model_29[0], make_settings(env_cache, "auto"))
    took = time.monotonic() - start
    assert again.python == env_29.python and "cached uv env" in again.reason and again.build_s == 0
    # The probe of the local interpreter plus a marker read; the budget is 0.3 s.
    assert took < 1.0, took
    start = time.monotonic()
    resolve_interpreter(model_29[0], make_settings(env_cache, "uv"))
    assert time.monotonic() - start < 0.5


def test_auto_keeps_the_server_interpreter_when_nothing_that_matters_differs(
    model_317: tuple[Path, dict], tmp_path: Path
) -> None:
    interp = resolve_interpreter(model_317[0], make_settings(tmp_path, "auto"))
    assert interp.python == sys.executable and interp.prefix is None
    assert interp.reason.startswith("auto: ") and "satisfies" in interp.reason
    assert not (tmp_path / "envs").exists()
    got = predict_with(interp.python, model_317[0])
    assert got["pred"] == model_317[1]["pred"]


def test_local_policy_warns_and_strict_refuses(model_29: tuple[Path, dict], tmp_path: Path) -> None:
    interp = resolve_interpreter(model_29[0], make_settings(tmp_path, "local"))
    assert interp.python == sys.executable
    assert "WARNING drift that matters: mlflow 2.9.2 wanted, 3.17.2 installed" in interp.reason
    with pytest.raises(
        EnvironmentError_, match=r"--strict-env.*scikit-learn 1\.3\.2 wanted, 1\.9\.1 installed"
    ):
        resolve_interpreter(model_29[0], make_settings(tmp_path, "local", strict_env=True))


def test_uv_policy_builds_the_newest_mlflow_model_too(model_317: tuple[Path, dict], env_cache: Path) -> None:
    interp = resolve_interpreter(model_317[0], make_settings(env_cache, "uv"))
    assert interp.reason.startswith("uv → built uv env at") or "cached uv env" in interp.reason
    got = predict_with(interp.python, model_317[0])
    assert got["mlflow"] == "3.17.2" and got["prefix"] == interp.prefix
    assert got["pred"] == model_317[1]["pred"] and got["proba"] == model_317[1]["proba"]


def test_path_policy_uses_an_existing_env(
    env_29: Interpreter, model_29: tuple[Path, dict], tmp_path: Path
) -> None:
    interp = resolve_interpreter(model_29[0], make_settings(tmp_path, f"path:{env_29.prefix}"))
    assert interp.python == str(Path(env_29.prefix) / "bin" / "python")
    assert "drift" not in interp.reason
    with pytest.raises(EnvironmentError_, match="no Python at"):
        resolve_interpreter(model_29[0], make_settings(tmp_path, f"path:{tmp_path / 'nope'}"))


def test_unresolvable_requirement_shows_the_resolver_message(
    model_29: tuple[Path, dict], copy_model: Callable[[Path], Path], tmp_path: Path
) -> None:
    model_dir = copy_model(model_29[0])
    reqs = (
        (model_dir / "requirements.txt").read_text().replace("scikit-learn==1.3.2", "scikit-learn==0.0.999")
    )
    (model_dir / "requirements.txt").write_text(reqs)
    cache_dir = tmp_path / "cache"
    with pytest.raises(EnvironmentError_) as info:
        resolve_interpreter(model_dir, make_settings(cache_dir, "uv"))
    message = info.value.message
    assert message.startswith("uv pip install failed (exit status 1)")
    assert "scikit-learn==0.0.999" in message and "No solution found" in message
    assert "Traceback" not in message
    assert cache_leftovers(cache_dir) == []


def _resolve_in_subprocess(model_dir: Path, cache_dir: Path) -> subprocess.Popen:
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[3]);"
        "from envs_support import make_settings; from modelport.envs import resolve_interpreter;"
        "from modelport.errors import ModelportError\n"
        "try:\n print(resolve_interpreter(Path(sys.argv[1]), make_settings(Path(sys.argv[2]), 'uv')).reason)\n"
        "except ModelportError as e:\n print('ERROR', e.message); sys.exit(2)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(model_dir), str(cache_dir), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=uv_environ(),
    )


def _uv_child(parent: int, timeout: float = 120) -> int:
    """The pid of `uv pip install` started (directly) by `parent`, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in _children(parent):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"pip" in cmd and b"install" in cmd:
                return pid
        time.sleep(0.01)
    raise AssertionError("uv pip install never started")


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def test_killed_builds_leave_the_cache_clean_and_the_next_call_rebuilds(
    model_29: tuple[Path, dict], tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    # 1. uv itself is killed mid-install: a clear error, nothing half-built kept.
    proc = _resolve_in_subprocess(model_29[0], cache_dir)
    os.kill(_uv_child(proc.pid), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "ERROR uv pip install was killed by signal 9" in out
    assert cache_leftovers(cache_dir) == []
    # 2. the building process itself is killed: uv dies with it, the leftovers are not reused.
    proc = _resolve_in_subprocess(model_29[0], cache_dir)
    uv_pid = _uv_child(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{uv_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{uv_pid}").exists() or "Z" in Path(f"/proc/{uv_pid}/stat").read_text().split()[2]
    assert [p for p in cache_leftovers(cache_dir) if p.startswith(".tmp-")], "expected an unfinished build"
    # 3. the next call cleans up and builds.
    interp = resolve_interpreter(model_29[0], make_settings(cache_dir, "uv"))
    assert "built uv env" in interp.reason
    assert cache_leftovers(cache_dir) == []
    assert predict_with(interp.python, model_29[0])["pred"] == model_29[1]["pred"]


def test_two_processes_asking_at_once_build_once(model_29: tuple[Path, dict], tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    procs = [_resolve_in_subprocess(model_29[0], cache_dir) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    reasons = sorted(o[0].strip() for o in outs)
    assert sum("built uv env" in r for r in reasons) == 1, reasons
    assert sum("cached uv env" in r for r in reasons) == 1, reasons
    assert len([p for p in (cache_dir / "envs").iterdir() if p.is_dir()]) == 1
    shutil.rmtree(cache_dir)


def test_a_model_with_uv_lock_is_synced_from_the_lock(
    model_29: tuple[Path, dict], copy_model: Callable[[Path], Path], tmp_path: Path
) -> None:
    from envs_support import OLD_STACK

    from modelport.envs.build import uv_binary

    model_dir = copy_model(model_29[0])
    deps = ", ".join(f'"{d}"' for d in [*OLD_STACK, "pyyaml==6.0.1"])
    (model_dir / "pyproject.toml").write_text(
        f'[project]\nname = "trainer"\nversion = "0.1"\nrequires-python = "==3.11.*"\ndependencies = [{deps}]\n'
    )
    subprocess.run(
        [uv_binary(), "lock", "-q", "--python", "3.11"],
        cwd=model_dir,
        env=uv_environ(),
        check=True,
        timeout=300,
    )
    interp = resolve_interpreter(model_dir, make_settings(tmp_path / "cache", "uv"))
    # pyyaml 6.0.1 is only in the lock (requirements.txt says 6.0.3): the lock won.
    versions = subprocess.run(
        [interp.python, "-I", "-c", "import yaml, sklearn; print(yaml.__version__, sklearn.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions == ["6.0.1", "1.3.2"]
    assert predict_with(interp.python, model_dir)["proba"] == model_29[1]["proba"]
