"""Environments where real clusters put them: offline (wheelhouse or cache only, index unreachable),
models that only carry MLflow 1.x's conda.yaml, and a cache pruned while a server uses it.

Real uv builds and real `modelport serve` processes; the index is reached only to build (and the
shared uv cache in .cache/uv makes that mostly local).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from envs_support import UV_CACHE, cache_leftovers, make_settings, uv_environ
from model_scripts import probe_frame

from modelport import cache
from modelport.envs import Interpreter, resolve_interpreter
from modelport.errors import EnvironmentError_
from tests.conftest import REPO, free_port, start_server

pytestmark = pytest.mark.slow

# Where an index would be: a closed loopback port. Proxies too, so nothing can leave 127.0.0.1.
UNREACHABLE = {
    "UV_INDEX_URL": "http://127.0.0.1:9/simple",
    "UV_DEFAULT_INDEX": "http://127.0.0.1:9/simple",
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "PIP_EXTRA_INDEX_URL": "",
    "UV_EXTRA_INDEX_URL": "",
    "PIP_FIND_LINKS": "",
    "UV_FIND_LINKS": "",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1",
}


def _payload() -> dict:
    frame = probe_frame()
    return {
        "inputs": [
            {"name": c, "datatype": "FP64", "shape": [len(frame)], "data": frame[c].tolist()}
            for c in frame.columns
        ]
    }


def _predict(base: str) -> list[int]:
    resp = httpx.post(f"{base}/v2/models/model/infer", json=_payload(), timeout=60)
    assert resp.status_code == 200, resp.text
    return [int(v) for v in resp.json()["outputs"][0]["data"]]


def _probe_wheel(wheelhouse: Path) -> Path:
    """A tiny pure-Python wheel that no index has: only a wheelhouse can provide it."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    files = {
        "modelport_probe/__init__.py": b"VALUE = 42\n",
        "modelport_probe-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: modelport-probe\nVersion: 0.1\n",
        "modelport_probe-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("modelport_probe-0.1.dist-info/RECORD,,")
    out = wheelhouse / "modelport_probe-0.1-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("modelport_probe-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return out


def _needs_probe(model_dir: Path) -> Path:
    reqs = model_dir / "requirements.txt"
    # MLflow writes the file without a final newline.
    reqs.write_text(reqs.read_text().rstrip("\n") + "\nmodelport-probe==0.1\n")
    return model_dir


# Offline from uv's cache (filled by env_29's build) with every proxy closed. The index URLs stay
# as they were: uv's cache holds index pages per index.
def _offline_environ() -> dict[str, str]:
    closed = {k: v for k, v in UNREACHABLE.items() if "PROXY" in k}
    return uv_environ(**closed, PIP_FIND_LINKS="", UV_FIND_LINKS="", UV_CACHE_DIR=str(UV_CACHE))


def test_offline_build_without_a_distribution_fails_naming_it(
    model_29: tuple[Path, dict], env_29: Interpreter, copy_model: Callable[[Path], Path], tmp_path: Path
) -> None:
    model_dir = _needs_probe(copy_model(model_29[0]))
    settings = make_settings(tmp_path / "cache", "uv", environ=_offline_environ(), offline=True)
    with pytest.raises(EnvironmentError_) as info:
        resolve_interpreter(model_dir, settings)
    first, _, rest = info.value.message.partition("\n")
    assert first.startswith(
        "offline build: modelport-probe is neither in a wheelhouse (none given: --find-links or UV_FIND_LINKS)"
    ), first
    assert f"nor in uv's cache ({UV_CACHE})" in first
    assert "was not found in the cache" in rest  # uv's own words follow
    assert cache_leftovers(tmp_path / "cache") == []


def test_offline_build_from_a_wheelhouse_and_uv_cache(
    model_29: tuple[Path, dict], env_29: Interpreter, copy_model: Callable[[Path], Path], tmp_path: Path
) -> None:
    model_dir = _needs_probe(copy_model(model_29[0]))
    _probe_wheel(tmp_path / "wheelhouse")
    settings = make_settings(
        tmp_path / "cache",
        "uv",
        environ=_offline_environ(),
        offline=True,
        find_links=str(tmp_path / "wheelhouse"),
    )
    interp = resolve_interpreter(model_dir, settings)
    assert "built uv env" in interp.reason
    code = "import sklearn, mlflow, modelport_probe; print(sklearn.__version__, mlflow.__version__, modelport_probe.VALUE)"
    got = subprocess.run([interp.python, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["1.3.2", "2.9.2", "42"]


_NETNS_RUNNER = r"""
import json, subprocess, sys, time, urllib.request
port, log, payload, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open(log, "wb") as out:
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
try:
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            print(json.dumps({"exit": proc.returncode}))
            sys.exit(0)
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(json.dumps({"timeout": True}))
            sys.exit(0)
        time.sleep(0.2)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/model/infer",
        data=open(payload, "rb").read(),
        headers={"content-type": "application/json"},
    )
    print(urllib.request.urlopen(req, timeout=60).read().decode())
finally:
    proc.terminate()
    proc.wait(30)
"""


def _netns_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    return probe.returncode == 0


def test_packed_env_serves_with_the_index_unreachable(
    model_29: tuple[Path, dict], env_29: Interpreter, env_cache: Path, tmp_path: Path
) -> None:
    # 1. On a connected machine: build and pack.
    tarball = tmp_path / "dist" / "env.tar.gz"
    build = subprocess.run(
        [sys.executable, "-m", "modelport", "env", "build", str(model_29[0]), "--pack", str(tarball)],
        capture_output=True,
        text=True,
        env=uv_environ(MODELPORT_CACHE_DIR=str(env_cache)),
        cwd=REPO,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    # 2. Air-gapped: no index, no uv cache, --offline; with a network namespace of its own where
    # the machine allows one (then nothing but its own loopback even exists).
    environ = uv_environ(**UNREACHABLE, UV_CACHE_DIR=str(tmp_path / "no-uv-cache"))
    environ["MODELPORT_CACHE_DIR"] = str(tmp_path / "offline-cache")
    args = ["--name", "model", "--env", f"tarball:{tarball}", "--offline", "--grpc-port", "0"]
    if _netns_available():
        port = free_port()
        payload = tmp_path / "payload.json"
        payload.write_text(json.dumps(_payload()))
        log = tmp_path / "netns-server.log"
        cmd = [sys.executable, "-m", "modelport", "serve", str(model_29[0]), "--host", "127.0.0.1"]
        cmd += ["--http-port", str(port), *args]
        proc = subprocess.run(
            ["unshare", "-n", sys.executable, "-c", _NETNS_RUNNER, str(port), str(log), str(payload), *cmd],
            capture_output=True,
            text=True,
            env=environ,
            cwd=REPO,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
        assert "outputs" in reply, (reply, log.read_text(errors="replace")[-3000:])
        assert [int(v) for v in reply["outputs"][0]["data"]] == model_29[1]["pred"]
        assert "tarball: unpacked env.tar.gz" in log.read_text(errors="replace")
    else:
        server = start_server(model_29[0], *args, tmp=tmp_path, env=environ, timeout=600)
        try:
            assert _predict(server.base) == model_29[1]["pred"]
            assert "tarball: unpacked env.tar.gz" in server.log()
        finally:
            server.stop()


def _conda_only(model_dir: Path) -> Path:
    """Make a copy of the MLflow 2.9 model look like MLflow 1.x left it: conda.yaml only."""
    (model_dir / "python_env.yaml").unlink()
    (model_dir / "requirements.txt").unlink()
    spec = yaml.safe_load((model_dir / "MLmodel").read_text())
    spec["flavors"]["python_function"]["env"] = "conda.yaml"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(spec))
    (model_dir / "conda.yaml").write_text(
        "channels:\n- defaults\n- conda-forge\ndependencies:\n- python=3.11.7\n- scikit-learn=1.3.2\n"
        "- numpy=1.26.4\n- scipy=1.17.1\n- mkl\n- pip\n- pip:\n  - mlflow\n  - cloudpickle==3.1.3\n"
        "  - packaging==23.2\nname: mlflow-env\n"
    )
    return model_dir


def test_conda_only_model_is_served_under_env_uv(
    model_29: tuple[Path, dict], copy_model: Callable[[Path], Path], tmp_path: Path
) -> None:
    model_dir = _conda_only(copy_model(model_29[0]))
    env = uv_environ(MODELPORT_CACHE_DIR=str(tmp_path / "cache"))
    diff = subprocess.run(
        [sys.executable, "-m", "modelport", "env", "diff", str(model_dir), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    rows = {r["name"]: r for r in json.loads(diff.stdout)["rows"]}
    assert rows["scikit-learn"]["wanted"] == "==1.3.2" and rows["mkl"]["kind"] == "unmapped"
    assert rows["mlflow"]["wanted"] == "==2.9.2"  # "mlflow" unpinned: the version that saved it
    server = start_server(model_dir, "--name", "model", "--env", "uv", tmp=tmp_path, env=env, timeout=900)
    try:
        assert _predict(server.base) == model_29[1]["pred"]
        log = server.log()
        assert "built uv env" in log and "mkl (not a Python package on PyPI)" in log, log[-3000:]
    finally:
        server.stop()


def test_prune_while_a_server_uses_the_entry(
    model_29: tuple[Path, dict], env_29: Interpreter, tmp_path: Path
) -> None:
    # A cache of its own holding env_29's entry (relocatable: a copy works where it lands).
    assert env_29.prefix is not None
    src = Path(env_29.prefix)
    cache_dir = tmp_path / "cache"
    (cache_dir / "envs").mkdir(parents=True)
    shutil.copytree(src, cache_dir / "envs" / src.name, symlinks=True)
    shutil.copy2(src.with_name(f"{src.name}{cache.READY}"), cache_dir / "envs")
    env = uv_environ(MODELPORT_CACHE_DIR=str(cache_dir))

    def prune() -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "modelport", "cache", "prune", "--max-bytes", "0"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    server = start_server(model_29[0], "--name", "model", "--env", "uv", tmp=tmp_path, env=env, timeout=300)
    try:
        assert "cached uv env" in server.log()
        out = prune()
        assert f"kept envs/{src.name}" in out and "in use" in out, out
        assert (cache_dir / "envs" / src.name / "bin" / "python").exists()
        assert _predict(server.base) == model_29[1]["pred"]
        listed = subprocess.run(
            [sys.executable, "-m", "modelport", "cache", "list", "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        )
        assert [e["in_use"] for e in json.loads(listed.stdout)["entries"]] == [True]
    finally:
        server.stop()
    out = prune()
    assert f"removed envs/{src.name}" in out, out
    assert not (cache_dir / "envs" / src.name).exists()
    assert os.listdir(cache_dir / "envs") and all(n.endswith(".lock") for n in os.listdir(cache_dir / "envs"))
