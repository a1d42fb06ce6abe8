"""Which models a server is asked to serve: MODEL_URI arguments, NAME=URI, --model-repository."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelport.cli import make_parser, run
from modelport.errors import ModelportError
from modelport.settings import build_settings
from modelport.startup import make_repository, multi_model, name_of, parse_model_arg
from tests.conftest import start_server


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("iris=/models/iris", ("iris", "/models/iris")),
        ("a.b-c_1=s3://bucket/x", ("a.b-c_1", "s3://bucket/x")),
        ("/models/iris", (None, "/models/iris")),
        # "=" inside a URI is not a name: what stands before it is not one.
        ("https://host/m.tar.gz?sig=abc", (None, "https://host/m.tar.gz?sig=abc")),
        ("s3://bucket/k=v/model", (None, "s3://bucket/k=v/model")),
        ("=/x", (None, "=/x")),
    ],
)
def test_name_equals_uri(arg: str, expected: tuple[str | None, str]) -> None:
    assert parse_model_arg(arg) == expected


def test_default_names_are_the_last_segment() -> None:
    assert name_of("/models/iris/") == "iris"
    assert name_of("s3://bucket/prefix/churn") == "churn"
    assert name_of("https://host/m.tar.gz?sig=1") == "m.tar.gz"


def settings_of(argv: list[str], environ: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    args, extra = make_parser().parse_known_args(["serve", *argv])
    flags = vars(args)
    flags["model_uris"] = [*(flags["model_uris"] or []), *extra]
    return build_settings(flags, environ or {})


def test_flags_reach_the_settings(tmp_path: Path) -> None:
    s = settings_of(
        ["a=/x", "b=/y", "--max-loaded-models", "3", "--load-models-at-startup", "false", "c=/z"]
    ).serve
    assert s.model_uris == ("a=/x", "b=/y", "c=/z") and s.model_uri == ""
    assert s.max_loaded_models == 3 and s.load_models_at_startup is False
    one = settings_of(["/only"]).serve
    assert one.model_uri == "/only" and one.model_uris == ("/only",)
    env = {"MODELPORT_MODEL_REPOSITORY": str(tmp_path), "MODELPORT_MAX_LOADED_MODELS": "2"}
    s = settings_of([], env).serve
    assert s.model_repository == str(tmp_path) and s.max_loaded_models == 2
    with pytest.raises(ModelportError, match="MODELPORT_MAX_LOADED_MODELS"):
        settings_of([], {"MODELPORT_MAX_LOADED_MODELS": "-1"})


def test_one_uri_alone_is_the_single_model_server(tmp_path: Path) -> None:
    assert not multi_model(settings_of(["/only"]).serve, [(None, "/only")])
    assert multi_model(settings_of(["a=/x", "b=/y"]).serve, [("a", "/x"), ("b", "/y")])
    opts = settings_of(["/only", "--model-repository", str(tmp_path)]).serve
    assert multi_model(opts, [(None, "/only")])


def test_the_repository_knows_every_model_named(tmp_path: Path) -> None:
    for name in ("one", "two", "not a name"):
        (tmp_path / "repo" / name).mkdir(parents=True)
        (tmp_path / "repo" / name / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "repo" / "no-mlmodel").mkdir()
    settings = settings_of([f"x={tmp_path}/m", "--model-repository", str(tmp_path / "repo")])
    dataplane, repository, _ = make_repository(settings)
    assert list(repository.entries) == ["x", "one", "two"]
    assert {e.state for e in repository.entries.values()} == {"UNAVAILABLE"}
    # Not ready until the start-up loads are over; then, with nothing loaded, nothing to wait for.
    assert dataplane.ready_when_empty and dataplane.starting and not dataplane.ready()
    dataplane.starting = False
    assert dataplane.ready()
    lazy = settings_of(["--model-repository", str(tmp_path / "repo"), "--load-models-at-startup", "false"])
    assert make_repository(lazy)[0].ready()


def test_duplicate_names_and_a_missing_repository_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelportError, match="two models named 'm'"):
        make_repository(settings_of(["/a/m", "/b/m"]))
    with pytest.raises(ModelportError, match="no such folder"):
        make_repository(settings_of(["--model-repository", str(tmp_path / "nope")]))


def test_flags_after_uris_and_unknown_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(["serve", "a=/x", "--bogus"])
    assert info.value.code == 2 and "--bogus" in capsys.readouterr().err


# Runs modelport's CLI with WorkerPool.start failing as a bug of ours would (not a ModelportError),
# for the models named in FAULTY (a comma list): a fault no real model can cause.
INJECT_FAULT = """
import os, sys
import modelport.workers.pool as pool
real_start = pool.WorkerPool.start
async def start(self):
    if self.model in os.environ["FAULTY"].split(","):
        raise RuntimeError(f"injected fault in {self.model}")
    await real_start(self)
pool.WorkerPool.start = start
from modelport.cli import run
sys.exit(run(sys.argv[1:]))
"""


@pytest.mark.slow
def test_an_unexpected_error_loading_the_only_model_is_logged_and_exits_1(
    iris_model: Path, tmp_path: Path
) -> None:
    server = start_server(
        iris_model, tmp=tmp_path, env={"FAULTY": "iris"}, launcher=("-c", INJECT_FAULT), expect_ready=False
    )
    try:
        code = server.proc.wait(120)
    finally:
        server.stop()
    log = server.log()
    assert code == 1, log
    assert "model 'iris' failed to load: injected fault in iris" in log
    assert "Traceback" in log and "RuntimeError: injected fault in iris" in log


@pytest.mark.slow
def test_an_unexpected_error_loading_one_of_several_models_marks_it_unavailable(
    iris_model: Path, tmp_path: Path
) -> None:
    server = start_server(
        f"good={iris_model}",
        f"bad={iris_model}",
        tmp=tmp_path,
        env={"FAULTY": "bad"},
        launcher=("-c", INJECT_FAULT),
    )
    try:
        index = httpx.post(f"{server.base}/v2/repository/index", json={}, timeout=10).json()
        states = {m["name"]: (m["state"], m["reason"]) for m in index}
        assert states["good"] == ("READY", "")
        assert states["bad"][0] == "UNAVAILABLE"
        assert "RuntimeError: injected fault in bad" in states["bad"][1]
        assert "model 'bad': unexpected error while loading it" in server.log()
    finally:
        server.stop()
