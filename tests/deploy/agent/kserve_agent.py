"""A stand-in for KServe's model agent (``cmd/agent --enable-puller``), for the multi-model pod test.

KServe's agent image is not available here, so this script, run from the modelport image, does
what kserve/kserve's pkg/agent does with the same arguments:

- watcher.go: at start, the models already on disk (``MODEL_DIR/NAME/SUCCESS.*`` files), then the
  TrainedModels in ``CONFIG_DIR/models.json`` (``[{"modelName", "modelSpec": {"storageUri",
  "framework", "memory"}}]``), re-read each time the kubelet publishes a new ``..data``; a model
  added or whose spec changed is an Add (after a Remove), one no longer listed a Remove, with the
  same two-pass "stale" bookkeeping. (KServe waits for the ``..data`` create event with fsnotify;
  this polls the link every 0.2 s.)
- puller.go: the operations of one model run in order, different models side by side. Add:
  download the storageUri into ``MODEL_DIR/NAME`` (downloader.go: skipped when its
  ``SUCCESS.<sha256 of the spec>`` file is there, written after the download), then
  ``POST http://localhost:8080/v2/repository/models/NAME/load`` with ``{}``. Remove: delete
  ``MODEL_DIR/NAME``, then ``POST .../NAME/unload`` with ``{}``. (KServe's puller hard-codes
  localhost:8080, whatever --component-port says; so does this.)
- main.go: an HTTP server on --port (9081) whose answer is the model server's readiness, probed
  with ``SERVING_READINESS_PROBE``; SIGTERM ends it with exit code 0.

The download is ``modelport fetch URI MODEL_DIR/NAME`` with the S3 credentials KServe's webhook
injects into the agent (AWS_*, S3_ENDPOINT, AWS_ENDPOINT_URL ...); the spec's hash is taken over
its JSON rather than Go's ``%v`` of the struct. Standard library only besides that.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

Spec = dict[str, Any]
MODEL_CONFIG_FILE = "models.json"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} agent: {message}", file=sys.stderr, flush=True)


def post(url: str) -> tuple[int, str]:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def spec_hash(spec: Spec) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class Puller:
    """One worker thread per model name, fed in order (puller.go's ModelChannel)."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.queues: dict[str, queue.Queue[tuple[str, Spec | None]]] = {}

    def enqueue(self, name: str, op: str, spec: Spec | None) -> None:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = queue.Queue()
            threading.Thread(target=self.run, args=(name, q), daemon=True).start()
        q.put((op, spec))

    def run(self, name: str, q: queue.Queue[tuple[str, Spec | None]]) -> None:
        while True:
            op, spec = q.get()
            try:
                self.add(name, spec) if op == "Add" and spec is not None else self.remove(name)
            except Exception as exc:  # the agent logs a failed operation and goes on
                log(f"{op} of model {name} failed: {exc!r}")

    def add(self, name: str, spec: Spec) -> None:
        folder = self.model_dir / name
        success = folder / f"SUCCESS.{spec_hash(spec)}"
        log(f"Downloading model from {spec['storageUri']} to {folder}")
        if not success.exists():
            proc = subprocess.run(
                ["modelport", "fetch", spec["storageUri"], str(folder)], capture_output=True, text=True
            )
            if proc.returncode != 0:
                log(f"Failed to download model {name} with err {proc.stderr.strip()[-2000:]}")
                return
            success.write_text(json.dumps(spec))
        status, body = post(f"http://localhost:8080/v2/repository/models/{name}/load")
        if status == 200:
            log(f"Successfully loaded model {name}")
        else:
            log(f"Failed to load model {name} with status [{status}] and resp:{body}")

    def remove(self, name: str) -> None:
        log(f"unloading model {name}")
        shutil.rmtree(self.model_dir / name, ignore_errors=True)
        status, body = post(f"http://localhost:8080/v2/repository/models/{name}/unload")
        if status == 200:
            log(f"Successfully unloaded model {name}")
        else:
            log(f"Failed to unload model {name} with status [{status}] and resp:{body}")


class Watcher:
    def __init__(self, config_dir: Path, model_dir: Path, puller: Puller) -> None:
        self.config_dir = config_dir
        self.puller = puller
        # name -> [spec, stale]; SyncModelDir: what a previous agent left on disk starts stale.
        self.tracker: dict[str, list[Any]] = {}
        for success in sorted(model_dir.glob("*/SUCCESS.*")):
            try:
                self.tracker[success.parent.name] = [json.loads(success.read_text()), True]
                log(f"recovered model {success.parent.name}")
            except (OSError, ValueError) as exc:
                log(f"failed to parse success file {success}: {exc}")

    def sync(self) -> None:
        try:
            configs = json.loads((self.config_dir / MODEL_CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            log(f"Failed to sync model config file: {exc}")
            return
        for config in configs:  # watcher.go parseConfig
            name, spec = config["modelName"], config["modelSpec"]
            existing = self.tracker.get(name)
            if existing is None:
                self.tracker[name] = [spec, False]
                log(f"adding model {name}")
                self.puller.enqueue(name, "Add", spec)
            elif spec != existing[0]:
                self.tracker[name] = [spec, False]
                log(f"removing model {name}")
                self.puller.enqueue(name, "Remove", None)
                log(f"adding model {name}")
                self.puller.enqueue(name, "Add", spec)
            else:
                existing[1] = False
        for name, entry in list(self.tracker.items()):
            if entry[1]:
                del self.tracker[name]
                log(f"removing model {name}")
                self.puller.enqueue(name, "Remove", None)
            else:
                entry[1] = True

    def watch(self, stop: threading.Event) -> None:
        link = self.config_dir / "..data"
        seen = None
        while not stop.is_set():
            target = os.readlink(link) if link.is_symlink() else None
            if target != seen:
                seen = target
                log(f"Processing event {link} -> {target}")
                self.sync()
            stop.wait(0.2)


def readiness_handler(probe: dict[str, Any] | None) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = True
            if probe is not None and "httpGet" in probe:
                get = probe["httpGet"]
                url = f"http://127.0.0.1:{get['port']}{get.get('path', '/')}"
                try:
                    with urllib.request.urlopen(url, timeout=float(probe.get("timeoutSeconds", 1))) as resp:
                        ok = 200 <= resp.status < 400
                except (OSError, urllib.error.HTTPError):
                    ok = False
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9081)
    parser.add_argument("--component-port", type=int, default=8080)
    parser.add_argument("--enable-puller", action="store_true")
    parser.add_argument("--config-dir", default="/mnt/configs")
    parser.add_argument("--model-dir", default="/mnt/models")
    args, unknown = parser.parse_known_args()
    if unknown:
        log(f"arguments this stand-in does not act on: {unknown}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    raw = os.environ.get("SERVING_READINESS_PROBE")
    server = http.server.ThreadingHTTPServer(
        ("0.0.0.0", args.port), readiness_handler(json.loads(raw) if raw else None)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if args.enable_puller:
        log(f"Initializing model agent with config-dir {args.config_dir}, model-dir {args.model_dir}")
        model_dir = Path(args.model_dir)
        watcher = Watcher(Path(args.config_dir), model_dir, Puller(model_dir))
        threading.Thread(target=watcher.watch, args=(stop,), daemon=True).start()
    log(f"Starting agent http server on port {args.port}")
    stop.wait()
    log("Received TERM signal, shutting down")
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
