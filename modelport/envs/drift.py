"""Compare a model's requirements with what an interpreter has installed.

Which differences matter is decided here, in one table (MATTERS) and one rule (classify).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelport.envs.requirements import MLFLOW_NAMES, ModelEnv
from modelport.errors import EnvironmentError_

# Packages whose version changes how a saved model deserialises or what it predicts: a
# major or minor difference in one of them blocks running the model under that interpreter.
MATTERS_ALWAYS = {"mlflow", "mlflow-skinny", "cloudpickle", "numpy", "pandas", "scipy", "pyarrow", "skops"}
MATTERS_BY_FLAVOR: dict[str, set[str]] = {
    "sklearn": {"scikit-learn", "joblib"},
    "xgboost": {"xgboost"},
    "lightgbm": {"lightgbm"},
    "catboost": {"catboost"},
    "pytorch": {"torch"},
    "tensorflow": {"tensorflow", "keras"},
    "keras": {"keras", "tensorflow", "jax", "torch"},
    "statsmodels": {"statsmodels"},
    "prophet": {"prophet"},
    "transformers": {"transformers", "torch", "tokenizers"},
    "sentence_transformers": {"sentence-transformers", "transformers", "torch"},
    "spacy": {"spacy"},
    "onnx": {"onnx", "onnxruntime"},
    "h2o": {"h2o"},
    "spark": {"pyspark"},
    "paddle": {"paddlepaddle"},
    "pmdarima": {"pmdarima"},
    "langchain": {"langchain", "langchain-core"},
}

# Runs under any Python >= 3.8 with nothing but the standard library.
_PROBE = r"""
import json, os, platform, re, sys
from importlib import metadata
pkgs = {}
for d in metadata.distributions():
    name = d.metadata["Name"]
    if name:
        pkgs.setdefault(re.sub(r"[-_.]+", "-", name).lower(), d.version)
impl = sys.implementation
iv = "{0.major}.{0.minor}.{0.micro}".format(impl.version)
if impl.version.releaselevel != "final":
    iv += impl.version.releaselevel[0] + str(impl.version.serial)
markers = {
    "implementation_name": impl.name, "implementation_version": iv, "os_name": os.name,
    "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(), "platform_python_implementation":
    platform.python_implementation(), "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
print(json.dumps({"python": sys.executable, "version": platform.python_version(),
                  "packages": pkgs, "markers": markers}))
"""


@dataclass(frozen=True)
class InstalledEnv:
    python: str
    python_version: str
    packages: Mapping[str, str]
    markers: Mapping[str, str]


@dataclass(frozen=True)
class DriftRow:
    name: str
    wanted: str
    installed: str | None
    # ok | missing | major | minor | patch | local | range | skipped | unchecked | unmapped
    kind: str
    matters: bool
    blocking: bool

    def text(self) -> str:
        return f"{self.name} {self.wanted.lstrip('=')} wanted, {self.installed or 'none'} installed"


@dataclass(frozen=True)
class DriftReport:
    python: str
    rows: tuple[DriftRow, ...]
    # The model's requirements inferred from MLmodel (it carries no environment files).
    inferred: tuple[str, ...] = ()

    @property
    def blocking(self) -> tuple[DriftRow, ...]:
        return tuple(r for r in self.rows if r.blocking)

    @property
    def drifted(self) -> tuple[DriftRow, ...]:
        return tuple(r for r in self.rows if r.kind not in ("ok", "skipped"))

    def summary(self, rows: tuple[DriftRow, ...] | None = None, limit: int = 3) -> str:
        rows = self.blocking if rows is None else rows
        parts = [r.text() for r in rows[:limit]]
        if len(rows) > limit:
            parts.append(f"and {len(rows) - limit} more")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "python": self.python,
            "blocking": bool(self.blocking),
            "rows": [asdict(r) for r in self.rows],
            "inferred": list(self.inferred),
        }


def probe_interpreter(python: str, environ: Mapping[str, str], timeout: float = 60.0) -> InstalledEnv:
    """Ask an interpreter (as the worker will run it: -I) for its version and packages."""
    try:
        proc = subprocess.run(
            [python, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(environ),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentError_(f"cannot run the interpreter {python}: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise EnvironmentError_(f"the interpreter {python} failed to start: {' / '.join(tail)}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return InstalledEnv(data["python"], data["version"], data["packages"], data["markers"])


def matters(name: str, flavor: str) -> bool:
    name = canonicalize_name(name)
    return name in MATTERS_ALWAYS or name in MATTERS_BY_FLAVOR.get(flavor, set())


def diff(model: ModelEnv, installed: InstalledEnv) -> DriftReport:
    """One row per requirement (plus Python and mlflow); blocking rows decide `auto` and exit codes."""
    rows: list[DriftRow] = []
    if model.python_version:
        kind = _compare_versions(model.python_version, installed.python_version)
        rows.append(
            DriftRow(
                "python",
                model.python_version,
                installed.python_version,
                kind,
                True,
                kind in ("major", "minor"),
            )
        )
    reqs = list(model.requirements)
    if not {canonicalize_name(r.name) for r in reqs} & MLFLOW_NAMES:
        added = [a for a in model.added if canonicalize_name(Requirement(a).name) == "mlflow"]
        reqs.append(Requirement(added[0] if added else "mlflow"))
    for req in reqs:
        rows.append(classify(req, installed, model.flavor))
    for line in model.unparsed:
        if not line.startswith("-"):
            rows.append(DriftRow(line, line, None, "unchecked", False, False))
    for what in model.unmapped:
        # A conda package with no PyPI counterpart: named so that nobody wonders where it went.
        name, _, why = what.partition(" (")
        rows.append(DriftRow(name, f"conda: {why.rstrip(')') or 'unmapped'}", None, "unmapped", False, False))
    return DriftReport(installed.python, tuple(rows), model.inferred)


def classify(req: Requirement, installed: InstalledEnv, flavor: str) -> DriftRow:
    name = canonicalize_name(req.name)
    wanted = str(req.specifier) or "any"
    have = installed.packages.get(name)
    important = matters(name, flavor)
    if req.marker is not None and not req.marker.evaluate(dict(installed.markers)):
        return DriftRow(name, wanted, have, "skipped", important, False)
    if have is None:
        # The model asked for it by name: loading it without is a gamble whatever it is.
        return DriftRow(name, wanted, None, "missing", important, True)
    kind = _compare(req.specifier, have)
    return DriftRow(name, wanted, have, kind, important, important and kind in ("major", "minor", "range"))


def _compare(spec: SpecifierSet, have: str) -> str:
    pins = [s for s in spec if s.operator == "==" and not s.version.endswith(".*")]
    if len(pins) == 1 and len(spec) == 1:
        return _compare_versions(pins[0].version, have)
    try:
        ok = spec.contains(Version(have), prereleases=True)
    except InvalidVersion:
        ok = False
    return "ok" if ok else "range"


def _compare_versions(wanted: str, have: str) -> str:
    try:
        w, h = Version(wanted), Version(have)
    except InvalidVersion:
        return "ok" if wanted == have else "major"
    if w == h:
        return "ok"
    if w.public == h.public:
        return "local"
    wr, hr = (w.release + (0, 0))[:3], (h.release + (0, 0))[:3]
    if wr[0] != hr[0]:
        return "major"
    if wr[1] != hr[1]:
        return "minor"
    return "patch"
