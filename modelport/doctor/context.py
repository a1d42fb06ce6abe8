"""What the checks share: the options, the settings, and what earlier checks found (computed once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.envs.drift import InstalledEnv
    from modelport.envs.requirements import ModelEnv
    from modelport.kserve.selection import Selection
    from modelport.mlmodel.types import ModelSpec
    from modelport.settings import Settings


@dataclass(frozen=True)
class Options:
    """The flags of ``modelport doctor``."""

    uri: str
    target_python: str | None = None
    target_mlflow: str | None = None
    kserve_files: tuple[str, ...] = ()
    smoke: bool = True
    build: bool = False
    # Seconds a smoke server may take to become ready (environment builds included).
    smoke_timeout: float = 900.0


@dataclass
class KserveInputs:
    """The documents given with --kserve, by kind."""

    isvc: dict[str, Any]
    runtimes: list[dict[str, Any]] = field(default_factory=list)
    storage_containers: list[dict[str, Any]] = field(default_factory=list)
    crds: list[dict[str, Any]] = field(default_factory=list)
    trained_models: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Context:
    options: Options
    settings: Settings
    environ: Mapping[str, str]
    # Filled by the fetch check.
    model_dir: Path | None = None
    files: list[tuple[str, int]] = field(default_factory=list)  # (relative path, bytes)
    # Filled by the mlmodel check.
    spec: ModelSpec | None = None
    # Filled by the layout check: False when the flavors' files are missing.
    layout_ok: bool = False
    # Filled on first use.
    model_env: ModelEnv | None = None
    installed: InstalledEnv | None = None
    kserve: KserveInputs | None = None
    selection: Selection | None = None
    # Filled by the environment check: would `serve --env auto` build an isolated environment?
    needs_isolated_env: bool = False
    env_bytes: int | None = None
    drifted: list[str] = field(default_factory=list)
    # Slow subprocesses (the interpreter probe, uv's resolution) started early, run beside the checks.
    pool: ThreadPoolExecutor | None = None
    futures: dict[str, Future[Any]] = field(default_factory=dict)

    def start(self, name: str, fn: Callable[[], Any]) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="doctor")
        self.futures[name] = self.pool.submit(fn)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    @property
    def model_bytes(self) -> int:
        return sum(size for _, size in self.files)

    @property
    def target_python(self) -> str:
        from modelport.envs.resolve import local_python

        return self.options.target_python or local_python(self.settings)

    def model_environment(self) -> ModelEnv:
        if self.model_env is None:
            from modelport.envs.requirements import read_model_env

            assert self.model_dir is not None
            self.model_env = read_model_env(self.model_dir)
        return self.model_env

    def target_installed(self) -> InstalledEnv:
        """The target interpreter's Python version and packages (probed once)."""
        if self.installed is None:
            started = self.futures.get("probe")
            self.installed = started.result() if started is not None else self.probe()
        return self.installed

    def probe(self) -> InstalledEnv:
        from modelport.envs.drift import probe_interpreter

        return probe_interpreter(self.target_python, self.settings.env.process_environ)

    def target_mlflow(self) -> tuple[str | None, str]:
        """The MLflow version the target serves with, and where that came from."""
        if self.options.target_mlflow:
            return self.options.target_mlflow, "--target-mlflow"
        packages = self.target_installed().packages
        version = packages.get("mlflow") or packages.get("mlflow-skinny")
        return version, f"installed in {self.target_python}"
