"""Workers forked from a warm template: real pools, real templates and workers, real models."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modelport.mlmodel import read_model_spec
from modelport.workers.pool import WorkerPool
from modelport.workers.template import plan_for
from tests.conftest import start_server
from tests.workers.sleepy import save_code_model, save_sleepy_model
from tests.workers.test_pool import restarts, sleep_frame

pytestmark = pytest.mark.slow

THREADED = textwrap.dedent(
    """
    import threading, time
    import pandas as pd
    import mlflow.pyfunc


    class Threaded(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            # A background refresher, as models that poll a feature store have.
            threading.Thread(target=time.sleep, args=(3600,), name="refresher", daemon=True).start()

        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"alive": [threading.active_count()] * len(model_input)})
    """
)


@pytest.fixture(scope="module")
def sleepy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sleepy_model(tmp_path_factory.mktemp("sleepy"))


@pytest.fixture(scope="module")
def threaded_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_code_model(
        tmp_path_factory.mktemp("threaded"), "threaded_model", THREADED, "Threaded", {"x": [1.0]}
    )


def fork_pool(model: Path, name: str, size: int = 1, python: str = sys.executable) -> WorkerPool:
    async def prepare_load(hello: dict[str, Any]) -> str:
        return str(model)

    return WorkerPool(
        python, size, prepare_load, model=name, start="fork", plan=plan_for(read_model_spec(model))
    )


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def zombies_under(pid: int) -> list[int]:
    """Children of ``pid`` that exited and were never reaped."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def run_pool(pool: WorkerPool, body: Callable[[WorkerPool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        await pool.start()
        try:
            return await body(pool)
        finally:
            await pool.stop()

    return asyncio.run(main())


async def until(condition: Callable[[], bool], limit: float) -> float:
    """Wait until ``condition`` holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, "condition not met in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def test_workers_are_forked_from_a_template_that_holds_the_model(sleepy_model: Path) -> None:
    async def body(pool: WorkerPool) -> dict[str, Any]:
        assert pool.template is not None
        template = pool.template.pid
        assert template is not None
        pids = [w.hello["pid"] for w in pool.workers]
        reply, _ = await pool.request(*sleep_frame(0, "a"))
        return {
            "template": template,
            "template_parent": parent_of(template),
            "parents": [parent_of(p) for p in pids],
            "cwds": [os.readlink(f"/proc/{p}/cwd") for p in pids],
            "workdir": pool._workdir,
            "preloaded": pool.load_info.get("preloaded"),
            "ok": reply["ok"],
        }

    seen = run_pool(fork_pool(sleepy_model, "forked", size=2), body)
    assert seen["template_parent"] == os.getpid()
    assert seen["parents"] == [seen["template"]] * 2
    assert seen["preloaded"] is True  # a custom pyfunc with plain state: loaded once, before the fork
    assert seen["ok"]
    # Each worker in a private folder under the pool's, removed when the pool stops.
    assert sorted(seen["cwds"]) == [f"{seen['workdir']}/worker-0", f"{seen['workdir']}/worker-1"]
    assert not Path(seen["workdir"]).exists()
    assert not Path(f"/proc/{seen['template']}").exists()


def test_a_killed_worker_comes_back_forked_and_fast(sleepy_model: Path) -> None:
    async def body(pool: WorkerPool) -> dict[str, Any]:
        worker = pool.workers[0]
        old = worker.hello["pid"]
        os.kill(old, signal.SIGKILL)
        back = await until(lambda: worker.ready and worker.hello["pid"] != old, 60)
        reply, _ = await pool.request(*sleep_frame(0, "after"))
        assert pool.template is not None
        return {
            "back_s": back,
            "old": old,
            "new_parent": parent_of(worker.hello["pid"]),
            "template": pool.template.pid,
            "ok": reply["ok"],
            "zombies": zombies_under(pool.template.pid or 0),
        }

    seen = run_pool(fork_pool(sleepy_model, "killed"), body)
    assert seen["new_parent"] == seen["template"]
    assert seen["ok"] and seen["zombies"] == []
    assert not Path(f"/proc/{seen['old']}").exists()  # reaped by the template
    assert seen["back_s"] < 20  # a fork, not an interpreter start and a load (figures: benchmark)
    assert restarts("killed", "exit") == 1


def test_a_dead_template_is_replaced_and_its_workers_keep_serving(
    sleepy_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelport.workers")

    async def body(pool: WorkerPool) -> dict[str, Any]:
        assert pool.template is not None
        first = pool.template
        os.kill(first.pid or 0, signal.SIGKILL)
        await until(lambda: pool.template is not first and pool.template is not None, 60)
        await until(lambda: pool.template is not None and pool.template.ready_for_forks, 120)
        worker = pool.workers[0]
        orphan = worker.hello["pid"]
        served_by_orphan, _ = await pool.request(*sleep_frame(0, "orphan"))
        os.kill(orphan, signal.SIGKILL)  # its exit code went with the old template
        await until(lambda: worker.ready and worker.hello["pid"] != orphan, 60)
        assert pool.template is not None
        return {
            "orphan_ok": served_by_orphan["ok"],
            "new_template": pool.template.pid,
            "old_template": first.pid,
            "new_parent": parent_of(worker.hello["pid"]),
            "zombies": zombies_under(os.getpid()),
        }

    seen = run_pool(fork_pool(sleepy_model, "template-death"), body)
    assert seen["orphan_ok"]
    assert seen["new_template"] != seen["old_template"]
    assert seen["new_parent"] == seen["new_template"]
    assert seen["zombies"] == []
    assert "the worker template (pid" in caplog.text and "starting a new one" in caplog.text


def test_a_model_that_starts_threads_while_loading_is_loaded_per_worker(
    threaded_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelport.workers")

    async def body(pool: WorkerPool) -> dict[str, Any]:
        assert pool.template is not None
        return {
            "parent": parent_of(pool.workers[0].hello["pid"]),
            "template": pool.template.pid,
            "preloaded": pool.load_info.get("preloaded"),
            "threads": _thread_names(pool.template.pid or 0),
        }

    seen = run_pool(fork_pool(threaded_model, "threaded"), body)
    assert seen["parent"] == seen["template"]  # still forked, but before the load
    assert seen["preloaded"] is False
    assert "refresher" not in seen["threads"]  # the new template never loaded the model
    assert "loading the model started threads; workers load it after the fork" in caplog.text


def test_a_flavor_loaded_per_worker_keeps_its_library_out_of_the_template(torch_model: Path) -> None:
    assert plan_for(read_model_spec(torch_model)).preload is False

    async def body(pool: WorkerPool) -> dict[str, Any]:
        assert pool.template is not None
        worker = pool.workers[0].hello["pid"]
        template = pool.template.pid or 0
        return {
            "parent": parent_of(worker),
            "template": template,
            "preloaded": pool.load_info.get("preloaded"),
            "torch_in_worker": "libtorch" in Path(f"/proc/{worker}/maps").read_text(),
            "torch_in_template": "libtorch" in Path(f"/proc/{template}/maps").read_text(),
        }

    seen = run_pool(fork_pool(torch_model, "torch-per-worker"), body)
    assert seen["parent"] == seen["template"]
    assert seen["preloaded"] is False
    assert seen["torch_in_worker"] and not seen["torch_in_template"]


def test_threads_at_import_fall_back_to_spawning(
    sleepy_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    python = _venv_that_starts_a_thread(tmp_path)
    caplog.set_level(logging.INFO, logger="modelport.workers")

    async def body(pool: WorkerPool) -> dict[str, Any]:
        reply, _ = await pool.request(*sleep_frame(0, "spawned"))
        return {"parent": parent_of(pool.workers[0].hello["pid"]), "mode": pool.start_mode, "ok": reply["ok"]}

    seen = run_pool(fork_pool(sleepy_model, "threads-at-import", python=python), body)
    assert seen == {"parent": os.getpid(), "mode": "spawn", "ok": True}
    assert "workers are spawned, not forked from a template" in caplog.text
    assert "import-time-poller" in caplog.text  # the log names the thread


def _thread_names(pid: int) -> list[str]:
    return [(t / "comm").read_text().strip() for t in Path(f"/proc/{pid}/task").iterdir()]


def _venv_that_starts_a_thread(root: Path) -> str:
    """A venv over this one's packages whose interpreter starts a thread at start-up (a .pth line),
    as some site customisations and agents do."""
    import site
    import sysconfig

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()] or [sysconfig.get_paths()["purelib"]]
    (Path(purelib) / "parent.pth").write_text("".join(f"{p}\n" for p in ours))
    (Path(purelib) / "poller.pth").write_text(
        "import threading, time; threading.Thread(target=time.sleep, args=(3600,), "
        "name='import-time-poller', daemon=True).start()\n"
    )
    return str(python)


def test_a_stuck_template_is_killed_and_replaced(sleepy_model: Path) -> None:
    async def body(pool: WorkerPool) -> dict[str, Any]:
        assert pool.template is not None
        stuck = pool.template
        os.kill(stuck.pid or 0, signal.SIGSTOP)  # hung: it will not answer the fork request
        worker = pool.workers[0]
        old = worker.hello["pid"]
        os.kill(old, signal.SIGKILL)
        await until(lambda: worker.ready and worker.hello["pid"] != old, 120)
        reply, _ = await pool.request(*sleep_frame(0, "after"))
        assert pool.template is not None
        return {
            "ok": reply["ok"],
            "stuck_gone": not Path(f"/proc/{stuck.pid}").exists(),
            "new_template": pool.template.pid,
            "stuck": stuck.pid,
            "parent": parent_of(worker.hello["pid"]),
        }

    seen = run_pool(fork_pool(sleepy_model, "stuck-template"), body)
    assert seen["ok"] and seen["stuck_gone"]  # killed and reaped
    assert seen["new_template"] != seen["stuck"] and seen["parent"] == seen["new_template"]


def test_the_server_starts_the_template_before_its_imports_and_checks_and_adopts_it(
    iris_model: Path, tmp_path: Path
) -> None:
    # Python reports each import as it completes (on stderr, into the log): the server's own
    # (uvicorn, modelport.server) come after the template was started.
    server = start_server(
        iris_model,
        "--workers",
        "2",
        "--worker-start",
        "fork",
        tmp=tmp_path,
        env={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    try:
        # Ready is one worker ready; the second may still be forking.
        waited = time.monotonic() + 60
        while server.log().count("forked from template pid ") < 2 and time.monotonic() < waited:
            time.sleep(0.1)
        log = server.log()
    finally:
        server.stop()
    lines = log.splitlines()
    early = next(i for i, line in enumerate(lines) if "started early for" in line)
    checked = next(i for i, line in enumerate(lines) if "environment: auto" in line)
    assert early < checked, log
    imported = [
        i for i, line in enumerate(lines) if re.search(r"\|\s+(uvicorn|grpc|modelport\.server)$", line)
    ]
    assert len(imported) == 2 and early < min(imported), log
    pid = lines[early].split("worker template pid ")[1].split()[0]
    assert f"worker template pid {pid} ready" in log  # the pool adopted it, no second template
    assert log.count("forked from template pid " + pid) == 2
    assert "sklearn: loaded once in the template" in log
