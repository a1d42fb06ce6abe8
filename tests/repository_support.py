"""Helpers of the repository tests: model folders laid out as a repository, a server started on
one, bounded request loops run beside other calls, and the memory of a server's process tree."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server, start_server

IRIS_INPUTS = [
    {"name": "sepal_length", "datatype": "FP64", "shape": [2], "data": [5.1, 6.7]},
    {"name": "sepal_width", "datatype": "FP64", "shape": [2], "data": [3.5, 3.0]},
    {"name": "petal_length", "datatype": "FP64", "shape": [2], "data": [1.4, 5.2]},
    {"name": "petal_width", "datatype": "FP64", "shape": [2], "data": [0.2, 2.3]},
]
IRIS_CLASSES = [0, 2]  # what the bundled iris model predicts for the two rows above

SLEEPER_CODE = textwrap.dedent(
    '''
    import time

    import mlflow.pyfunc
    import pandas as pd


    class Sleeper(mlflow.pyfunc.PythonModel):
        """Doubles x after sleeping params["sleep"] seconds: requests that stay in flight."""

        def predict(self, context, model_input, params=None):
            time.sleep(float((params or {}).get("sleep", 0.0)))
            return pd.DataFrame({"y": model_input["x"] * 2.0})
    '''
)


def save_sleeper(dest: Path) -> Path:
    """A custom pyfunc, one double column in and out, with a ``sleep`` param."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import infer_signature

    code = dest.parent / "sleeper_code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "sleeper_model.py").write_text(SLEEPER_CODE)
    sys.path.insert(0, str(code))
    try:
        import sleeper_model

        example = pd.DataFrame({"x": [1.0, 2.0]})
        model = sleeper_model.Sleeper()
        signature = infer_signature(example, model.predict(None, example), {"sleep": 0.0})
        mlflow.pyfunc.save_model(
            dest,
            python_model=model,
            signature=signature,
            input_example=example,
            code_paths=[str(code / "sleeper_model.py")],
            pip_requirements=["mlflow", "pandas"],
        )
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("sleeper_model", None)
    return dest


def make_repository(root: Path, **models: Path) -> Path:
    """A --model-repository folder: one copy of each model under its name."""
    root.mkdir(parents=True, exist_ok=True)
    for name, src in models.items():
        shutil.copytree(src, root / name)
    return root


def add_broken(root: Path, name: str = "broken") -> Path:
    """A model folder whose MLmodel names a file that is not there."""
    folder = root / name
    folder.mkdir()
    (folder / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n"
    )
    return folder


def serve_repository(root: Path, *args: str, tmp: Path, **kwargs: Any) -> Server:
    return start_server(f"--model-repository={root}", *args, tmp=tmp, **kwargs)


def iris_infer(server: Server, name: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{server.base}/v2/models/{name}/infer", json={"inputs": IRIS_INPUTS}, timeout=timeout)


def outputs(resp: httpx.Response) -> dict[str, list[Any]]:
    assert resp.status_code == 200, resp.text
    return {o["name"]: o["data"] for o in resp.json()["outputs"]}


def index(server: Server) -> dict[str, tuple[str, str]]:
    resp = httpx.post(f"{server.base}/v2/repository/index", timeout=10)
    assert resp.status_code == 200, resp.text
    return {m["name"]: (m["state"], m["reason"]) for m in resp.json()}


@dataclass
class Hammer:
    """Requests sent back to back from a few threads until stopped (bounded by ``limit_s``)."""

    send: Callable[[httpx.Client], httpx.Response]
    check: Callable[[httpx.Response], bool]
    threads: int = 3
    limit_s: float = 300.0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Hammer:
        lock = threading.Lock()
        ends = time.monotonic() + self.limit_s

        def loop() -> None:
            with httpx.Client(timeout=60) as client:
                while not self._stop.is_set() and time.monotonic() < ends:
                    try:
                        resp = self.send(client)
                        good = self.check(resp)
                        detail = f"{resp.status_code} {resp.text[:200]}"
                    except httpx.HTTPError as exc:
                        good, detail = False, repr(exc)
                    with lock:
                        if good:
                            self.ok += 1
                        else:
                            self.failures.append(detail)

        self._workers = [threading.Thread(target=loop, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(90)


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total = 0
    todo = [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except OSError:
            continue
        todo.extend(children.get(p, []))
    return total


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")
