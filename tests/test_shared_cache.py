"""The shared content-addressed cache: LRU eviction to a budget, entries in use never evicted,
leftovers cleaned, and the `modelport cache` commands. Fast: no builds, no servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport import cache
from modelport.cli import run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    yield
    cache.release_all()


def _entry(cache_dir: Path, area: str, key: str, size: int, used: float) -> Path:
    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "blob").write_bytes(os.urandom(size))

    hit = cache.get_or_build(cache_dir / area, key, build, lambda _e: {"kind": "test", "uri": key})
    cache.release_all()  # not in use by this test process
    os.utime(cache_dir / area / f"{key}{cache.READY}", (used, used))
    return hit.path


def test_prune_evicts_least_recently_used_first_across_areas(tmp_path: Path) -> None:
    now = time.time()
    _entry(tmp_path, "models", "m-old", 200_000, now - 300)
    _entry(tmp_path, "envs", "e-mid", 200_000, now - 200)
    _entry(tmp_path, "envs", "e-new", 200_000, now - 100)
    assert [e.key for e in cache.list_entries(tmp_path)] == ["m-old", "e-mid", "e-new"]
    sizes = {e.key: e.bytes for e in cache.list_entries(tmp_path)}
    result = cache.prune(tmp_path, sizes["e-new"] + sizes["e-mid"])
    assert [e.key for e in result.removed] == ["m-old"]
    assert not (tmp_path / "models" / "m-old").exists()
    assert not (tmp_path / "models" / f"m-old{cache.READY}").exists()
    assert [e.key for e in cache.list_entries(tmp_path)] == ["e-mid", "e-new"]


def test_a_hit_counts_as_a_use(tmp_path: Path) -> None:
    now = time.time()
    _entry(tmp_path, "envs", "a", 10_000, now - 300)
    _entry(tmp_path, "envs", "b", 10_000, now - 200)
    cache.get_or_build(tmp_path / "envs", "a", lambda t: pytest.fail("rebuilt"))
    cache.release_all()
    assert [e.key for e in cache.list_entries(tmp_path)] == ["b", "a"]


def test_an_entry_in_use_by_another_process_is_never_evicted(tmp_path: Path) -> None:
    _entry(tmp_path, "envs", "busy", 50_000, time.time() - 500)
    _entry(tmp_path, "envs", "idle", 50_000, time.time())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from modelport import cache\n"
            "cache.get_or_build(Path(sys.argv[1]), 'busy', lambda t: None); print('held', flush=True)\n"
            "time.sleep(60)",
            str(tmp_path / "envs"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert {e.key: e.in_use for e in cache.list_entries(tmp_path)} == {"busy": True, "idle": False}
        result = cache.prune(tmp_path, 0)
        assert [e.key for e in result.removed] == ["idle"]
        assert [e.key for e in result.busy] == ["busy"]
        assert (tmp_path / "envs" / "busy" / "blob").is_file()
    finally:
        holder.kill()
        holder.wait()
    # Its holder gone, the entry can go too.
    assert [e.key for e in cache.prune(tmp_path, 0).removed] == ["busy"]


def test_entries_this_process_uses_are_kept_and_budget_applies_after_a_build(tmp_path: Path) -> None:
    now = time.time()
    _entry(tmp_path, "envs", "old", 100_000, now - 100)

    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "blob").write_bytes(os.urandom(100_000))

    hit = cache.get_or_build(tmp_path / "envs", "new", build, max_bytes=150_000)
    assert hit.built and hit.path.is_dir()
    assert [e.key for e in cache.list_entries(tmp_path)] == ["new"]  # "old" evicted, "new" held


def test_prune_removes_unfinished_builds_but_not_one_in_progress(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    root.mkdir()
    (root / ".tmp-dead-123").mkdir()
    (root / "halfdone").mkdir()  # renamed into place, never marked ready
    (root / ".trash-x-1").mkdir()
    (root / ".tmp-live-456").mkdir()
    import fcntl

    with open(root / "live.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = cache.prune(tmp_path, 0)
    assert sorted(result.leftovers) == ["envs/.tmp-dead-123", "envs/.trash-x-1", "envs/halfdone"]
    assert (root / ".tmp-live-456").is_dir()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1000", 1000),
        ("500M", 500_000_000),
        ("20G", 20_000_000_000),
        ("1.5GiB", 1536 * 1024**2),
        ("2kb", 2000),
    ],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert cache.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1", "5X"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        cache.parse_bytes(text)


def test_cache_list_and_prune_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    _entry(tmp_path, "models", "m1", 30_000, now - 50)
    _entry(tmp_path, "envs", "e1", 30_000, now)
    env = {"HOME": str(tmp_path)}
    assert run(["cache", "list", "--cache-dir", str(tmp_path), "--json"], env) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["area"], e["key"], e["in_use"]) for e in listed["entries"]] == [
        ("models", "m1", False),
        ("envs", "e1", False),
    ]
    assert run(["cache", "list", "--cache-dir", str(tmp_path)], env) == 0
    table = capsys.readouterr().out
    assert "m1" in table and "2 entries" in table
    assert run(["cache", "prune", "--cache-dir", str(tmp_path), "--max-bytes", "40k"], env) == 0
    out = capsys.readouterr().out
    assert "removed models/m1" in out and "e1" not in out.split("cache ")[0]
    assert run(["cache", "prune", "--cache-dir", str(tmp_path), "--max-bytes", "lots"], env) == 2
    assert "--max-bytes" in capsys.readouterr().err
    # No budget given or configured: everything not in use goes.
    assert run(["cache", "prune", "--cache-dir", str(tmp_path)], env) == 0
    assert cache.list_entries(tmp_path) == []
    assert (
        run(["cache", "list", "--cache-dir", str(tmp_path)], {**env, "MODELPORT_CACHE_MAX_BYTES": "x"}) == 2
    )


def test_disk_usage_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(os.urandom(64_000))
    os.link(tmp_path / "a", tmp_path / "b")
    single = cache.disk_usage(tmp_path)
    assert 64_000 <= single < 2 * 64_000
