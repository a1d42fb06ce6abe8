"""``modelport package URI --modelcar IMAGE``: an MLflow model as a KServe modelcar image.

A modelcar holds the model under ``/models`` and a shell to link it into the serving container
(KServe runs ``sh -c "ln -sf /proc/$$/root/models /mnt/models && sleep infinity"`` in it), nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from modelport.errors import ModelportError
from modelport.mlmodel import check_layout, read_model_spec
from modelport.settings import Settings
from modelport.storage import fetch
from modelport.storage.progress import make_reporter
from modelport.storage.source import redact

# The smallest image with sh, ln and sleep; pinned by version. `--base` names another (a local one
# where no registry is reachable: deploy/base/make-base.sh makes localhost/modelport-busybox:bookworm).
DEFAULT_BASE = "docker.io/library/busybox:1.37.0"
BUILDERS = ("podman", "buildah", "docker")

CONTAINERFILE = """\
FROM {base}
COPY models /models
LABEL io.modelport.model-uri={uri} io.modelport.flavor={flavor}
"""


def find_builder(name: str | None) -> str:
    for candidate in (name,) if name else BUILDERS:
        path = shutil.which(candidate)
        if path:
            return path
    wanted = name or " or ".join(BUILDERS)
    raise ModelportError(f"no image builder found: install {wanted} to build a modelcar")


def _make_readable(root: Path) -> None:
    """World-readable files and searchable folders: the modelcar may run as any UID (uidModelcar)."""
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
        for name in files:
            path = Path(folder) / name
            mode = path.stat().st_mode
            path.chmod(0o755 if mode & 0o111 else 0o644)
        for name in dirs:
            os.chmod(Path(folder) / name, 0o755)


def _label(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def package_modelcar(
    uri: str,
    image: str,
    settings: Settings,
    base: str = DEFAULT_BASE,
    builder: str | None = None,
    run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run,
) -> str:
    """Fetch the model, check it is one, and build IMAGE with it under /models; returns IMAGE."""
    tool = find_builder(builder)
    with tempfile.TemporaryDirectory(prefix="modelport-modelcar-") as tmp:
        context = Path(tmp)
        models = context / "models"
        fetch(uri, models, settings.storage, make_reporter(sys.stderr))
        spec = read_model_spec(models)
        check_layout(models, spec)
        _make_readable(models)
        (context / "Containerfile").write_text(
            CONTAINERFILE.format(base=base, uri=_label(redact(uri)), flavor=_label(spec.primary_flavor))
        )
        verb = ["bud"] if Path(tool).name == "buildah" else ["build"]
        cmd = [tool, *verb, "-f", str(context / "Containerfile"), "-t", image, str(context)]
        proc = run(cmd, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if proc.returncode != 0:
            raise ModelportError(f"{Path(tool).name} build failed (exit {proc.returncode}) for {image}")
    return image


def package_command(
    uri: str, settings: Settings, modelcar: str, base: str | None, builder: str | None
) -> int:
    print(package_modelcar(uri, modelcar, settings, base or DEFAULT_BASE, builder))
    return 0
