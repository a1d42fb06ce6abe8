"""MODEL_INIT_MODE=async: wait (bounded) for a model folder linked in by a modelcar, then follow the link."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from modelport.errors import StorageError
from modelport.settings import ServeSettings
from modelport.storage.modelcar import wait_for_model


class FakeTime:
    """A clock that moves only when the waiter sleeps; `on_sleep` may change the world meanwhile."""

    def __init__(self, on_sleep=None) -> None:  # type: ignore[no-untyped-def]
        self.now = 0.0
        self.sleeps = 0
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        if self.on_sleep:
            self.on_sleep(self)


def modelcar_root(tmp_path: Path) -> Path:
    """What the modelcar image holds: /models with the model's files."""
    models = tmp_path / "modelcar-root" / "models"
    models.mkdir(parents=True)
    (models / "MLmodel").write_text("flavors: {}\n")
    return models


def test_without_async_mode_the_uri_is_returned_untouched(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing")
    time = FakeTime()
    assert wait_for_model(ServeSettings(model_uri=missing), time.sleep, time.clock) == missing
    assert time.sleeps == 0


def test_remote_uris_are_never_waited_for() -> None:
    serve = ServeSettings(model_uri="s3://bucket/model", model_init_mode="async")
    assert wait_for_model(serve) == "s3://bucket/model"


def test_waits_for_the_link_then_follows_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = modelcar_root(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    link = mnt / "models"

    def appear(t: FakeTime) -> None:
        if t.now >= 3.0 and not link.is_symlink():
            os.symlink(target, link)  # what the modelcar's `ln -sf /proc/$$/root/models /mnt/models` does

    time = FakeTime(appear)
    serve = ServeSettings(model_uri=str(link), model_init_mode="async", model_wait_timeout_s=60)
    with caplog.at_level(logging.INFO, "modelport.storage"):
        got = wait_for_model(serve, time.sleep, time.clock)
    assert got == str(target)  # the link's target as written: a /proc/<pid>/root link is never resolved
    assert (Path(got) / "MLmodel").is_file()
    assert 3.0 <= time.now < 4.0
    assert (
        "waiting up to 60 s" in caplog.text and f"is a link to {target}: serving it from there" in caplog.text
    )


def test_a_dangling_link_is_waited_for_like_a_missing_one(tmp_path: Path) -> None:
    target = tmp_path / "later" / "models"
    link = tmp_path / "models"
    os.symlink(target, link)

    def appear(t: FakeTime) -> None:
        if t.now >= 2.0 and not target.exists():
            target.mkdir(parents=True)
            (target / "MLmodel").write_text("flavors: {}\n")

    time = FakeTime(appear)
    serve = ServeSettings(model_uri=f"file://{link}", model_init_mode="async", model_wait_timeout_s=60)
    assert wait_for_model(serve, time.sleep, time.clock) == str(target)


def test_gives_up_after_the_timeout_with_what_to_check(tmp_path: Path) -> None:
    link = tmp_path / "models"
    os.symlink("/proc/999999/root/models", link)
    time = FakeTime()
    serve = ServeSettings(model_uri=str(link), model_init_mode="async", model_wait_timeout_s=5)
    with pytest.raises(StorageError) as info:
        wait_for_model(serve, time.sleep, time.clock)
    message = info.value.message
    assert "did not appear within 5 s" in message and "dangling link to /proc/999999/root/models" in message
    assert "shareProcessNamespace" in message and "MODELPORT_MODEL_WAIT_TIMEOUT" in message
    assert 5.0 <= time.now <= 5.5


def test_an_empty_folder_is_not_a_model_yet(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    time = FakeTime()
    serve = ServeSettings(model_uri=str(empty), model_init_mode="async", model_wait_timeout_s=1)
    with pytest.raises(StorageError, match="an empty folder"):
        wait_for_model(serve, time.sleep, time.clock)
