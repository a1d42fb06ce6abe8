"""KServe modelcars: wait for the model folder that another container links in after we start.

With ``oci://`` storage KServe runs the model image as a sidecar that links ``/mnt/models`` to
``/proc/<its pid>/root/models`` and tells the server so with ``MODEL_INIT_MODE=async``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelport.errors import StorageError
from modelport.settings import ServeSettings
from modelport.storage.registry import scheme_of

log = logging.getLogger("modelport.storage")

# How often to look, and how often to say that we are still waiting.
POLL_S = 0.5
REPORT_EVERY_S = 10.0


def model_ready(path: Path) -> bool:
    """True once ``path`` resolves (through any links) to a folder with something in it."""
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        # A link into /proc/<pid>/root of a container that is not up yet, or not ours to read.
        return False


def wait_for_model(
    serve: ServeSettings,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """The model URI to fetch: unchanged, or, under MODEL_INIT_MODE=async, the local folder once it has appeared.

    Bounded by ``serve.model_wait_timeout_s``; raises StorageError naming what to check.
    """
    uri = serve.model_uri
    if serve.model_init_mode != "async" or scheme_of(uri) not in ("", "file"):
        return uri
    path = Path(unquote(urlsplit(uri).path)) if uri.startswith("file://") else Path(uri)
    start = clock()
    reported = start
    if not model_ready(path):
        log.info(
            "waiting up to %.0f s for %s (MODEL_INIT_MODE=async: a modelcar container links the model in)",
            serve.model_wait_timeout_s,
            path,
        )
    while not model_ready(path):
        now = clock()
        if now - start >= serve.model_wait_timeout_s:
            raise StorageError(
                f"{path} did not appear within {serve.model_wait_timeout_s:.0f} s "
                f"({_describe(path)}). With MODEL_INIT_MODE=async KServe's modelcar container links it to "
                "/proc/<pid>/root/models: check that container's logs, that the pod has "
                "shareProcessNamespace: true, and that both containers run as the same user "
                "(storageInitializer.uidModelcar). MODELPORT_MODEL_WAIT_TIMEOUT sets the wait."
            )
        if now - reported >= REPORT_EVERY_S:
            log.info("still waiting for %s after %.0f s (%s)", path, now - start, _describe(path))
            reported = now
        sleep(POLL_S)
    if path.is_symlink():
        # Served from the link's target as written, never its realpath: /proc/<pid>/root/models
        # resolves to /models of this container's own root, not the modelcar's. The target, not the
        # link, because mlflow checks that a model stays inside its parent folder after resolving
        # both: the parent /proc/<pid>/root resolves to "/", which holds any path, while /mnt
        # (the link's parent) does not hold /models.
        target = os.readlink(path)
        if os.path.isabs(target):
            log.info("model folder %s is a link to %s: serving it from there", path, target)
            return target
    return str(path.absolute())


def _describe(path: Path) -> str:
    if path.is_symlink():
        target = os.readlink(path)
        return f"a link to {target} that cannot be read" if path.exists() else f"a dangling link to {target}"
    if path.is_dir():
        return "an empty folder"
    return "absent"
