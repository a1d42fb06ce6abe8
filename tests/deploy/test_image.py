"""deploy/Dockerfile and .dockerignore: the image's commands, user, pins and build context, checked offline.

No Docker engine here: the Dockerfile is read as text and its ENTRYPOINT/CMD parsed by modelport's CLI.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from packaging.requirements import Requirement

from modelport.cli import make_parser
from modelport.settings import Settings, build_settings
from tests.conftest import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CONSTRAINTS = REPO / "deploy" / "constraints.txt"


def serve_settings(args: list[str]) -> Settings:
    # The same steps as modelport.cli.run, short of serving.
    flags = vars(make_parser().parse_args(args))
    flags["model_uri"] = flags.get("model_uri") or flags.get("model_dir")
    return build_settings(flags, {})


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, value = line.partition(" ")
            out.append((keyword.upper(), value.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile_instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def resolve_args(value: str, steps: list[tuple[str, str]]) -> str:
    defaults = dict(v.split("=", 1) for k, v in steps if k == "ARG" and "=" in v)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m[1] or m[2], m[0]), value)


def test_image_entrypoint_and_cmd_parse_with_modelport_cli() -> None:
    stage = final_stage()
    (entrypoint,) = [json.loads(v) for k, v in stage if k == "ENTRYPOINT"]
    (cmd,) = [json.loads(v) for k, v in stage if k == "CMD"]
    # tini at PID 1 forwards SIGTERM to modelport and reaps what its workers leave.
    assert entrypoint == ["tini", "-s", "--", "modelport"]
    # No arguments: the kserve-mlserver runtime gives none, only MLSERVER_* variables.
    assert cmd == ["serve"]
    mlserver_env = {"MLSERVER_MODEL_URI": "/mnt/models", "MLSERVER_HTTP_PORT": "8080"}
    flags = vars(make_parser().parse_args(cmd))
    settings = build_settings(flags, mlserver_env)
    assert settings.serve.model_uri == "/mnt/models"
    assert settings.serve.http_port == 8080
    # KServe's own runtime for modelport passes args, which replace CMD and keep the entrypoint.
    settings = serve_settings(["serve", "--model_dir=/mnt/models", "--http_port=8080"])
    assert settings.serve.model_uri == "/mnt/models"


def test_image_never_downloads_a_python_and_keeps_its_cache_on_one_path() -> None:
    envs = " ".join(v for k, v in final_stage() if k == "ENV")
    assert "UV_PYTHON_DOWNLOADS=never" in envs
    assert "MODELPORT_CACHE_DIR=/var/cache/modelport" in envs
    assert "UV_CACHE_DIR=/var/cache/modelport/uv" in envs


def test_image_runs_as_a_numeric_non_root_user() -> None:
    stage = final_stage()
    users = [resolve_args(v, dockerfile_instructions()) for k, v in stage if k == "USER"]
    # runAsNonRoot can only be checked by the kubelet for a numeric user.
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) != 0


def test_image_base_is_pinned_and_install_is_reproducible() -> None:
    steps = dockerfile_instructions()
    bases = [resolve_args(v.split()[0], steps) for k, v in steps if k == "FROM"]
    for base in bases:
        name, _, tag = base.partition(":")
        assert tag and tag != "latest", base
    installs = [c for k, v in steps if k == "RUN" for c in v.split("&&") if "pip install" in c]
    # The pinned dependencies (a cached layer), then modelport itself with nothing more.
    assert len(installs) == 2
    deps, package = (shlex.split(c) for c in installs)
    assert "--no-cache-dir" in deps and "--only-binary=:all:" in deps
    assert deps[deps.index("-r") + 1] == "deploy/constraints.txt"
    assert "--no-deps" in package and package[package.index("-c") + 1] == "deploy/constraints.txt"
    assert package[-1] == "."


def docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = re.escape(pattern.strip("/"))
        regex = regex.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else() -> None:
    patterns = dockerignore_patterns()
    sources = []
    for keyword, value in dockerfile_instructions():
        if keyword == "COPY" and "--from" not in value:
            sources.extend(value.split()[:-1])
    assert sources, "no COPY from the build context"
    for source in sources:
        assert (REPO / source).exists(), source
        files = [REPO / source] if (REPO / source).is_file() else (REPO / source).rglob("*.py")
        for file in files:
            rel = str(file.relative_to(REPO))
            assert not docker_ignored(rel, patterns), f"{rel} is copied but .dockerignore leaves it out"
    for left_out in (
        ".venv/bin/python",
        ".bench/x",
        ".cache/modelport/x",
        ".git/HEAD",
        "tests/conftest.py",
        "benchmarks/serve_bench.py",
        "examples/iris/MLmodel",
        "modelport/__pycache__/cli.cpython-311.pyc",
        "modelport.egg-info/PKG-INFO",
        "deploy/Dockerfile",
        ".env",
    ):
        assert docker_ignored(left_out, patterns), left_out


def test_constraints_pin_every_runtime_dependency_within_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")

    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower().replace("_", "-")] = spec.version
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        req = Requirement(dep)
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in deploy/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {dep}"
    assert "torch" not in pins
