"""The worker finds mlflow however it was installed; the version is what `import mlflow` says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "modelport" / "_runtime"

PROBE = r"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from modelport_worker import main
print(json.dumps({"version": main._mlflow_version(), "imported": "mlflow" in sys.modules}))
"""


def _probe(site: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, str(site), str(RUNTIME)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_local_build_without_distribution_metadata(tmp_path: Path) -> None:
    # What a source checkout on the path, or a build whose dist is named otherwise, looks like.
    (tmp_path / "mlflow").mkdir()
    (tmp_path / "mlflow" / "__init__.py").write_text(
        "raise SystemExit('importing mlflow is not allowed here')\n"
    )
    (tmp_path / "mlflow" / "version.py").write_text('import re\n\nVERSION = "3.99.0.dev0"\n')
    assert _probe(tmp_path) == {"version": "3.99.0.dev0", "imported": False}


def test_the_servers_own_mlflow_is_found(tmp_path: Path) -> None:
    import mlflow

    got = _probe(tmp_path)  # nothing in tmp_path: the venv's mlflow
    assert got == {"version": mlflow.__version__, "imported": False}
