"""Logging: JSON lines, the per-task request context, the access log, request ids from clients."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator

import pytest

from modelport import logs

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")

Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """``configure(level, fmt, ...)`` into a StringIO; every bit of global logging state restored after."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.asgi", "uvicorn.access")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names}
    saved_access = logs.ACCESS_LOGGER.level

    def run(level: str = "info", fmt: str = "json", **kw: object) -> io.StringIO:
        stream = io.StringIO()
        logs.configure(level, fmt, stream=stream, **kw)  # type: ignore[arg-type]
        return stream

    yield run
    if logs._handler is not None:
        root.removeHandler(logs._handler)
    logs._handler = None
    logs._access_on = False
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for n, (handlers, propagate) in saved.items():
        logging.getLogger(n).handlers = handlers
        logging.getLogger(n).propagate = propagate
    logs.ACCESS_LOGGER.setLevel(saved_access)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines(stream)]


log = logging.getLogger("modelport.test")


def test_json_lines_parse_and_carry_the_fields(configure: Configure) -> None:
    out = configure("info", "json")
    log.info("plain %s", "line")
    log.debug("below the level")
    with logs.request_context("rid-1", "iris"):
        log.warning("inside a request")
    (plain, inside) = records(out)
    assert set(plain) == {"time", "level", "logger", "message"}
    assert RFC3339_MS_UTC.match(str(plain["time"])), plain["time"]
    assert (plain["level"], plain["logger"], plain["message"]) == ("INFO", "modelport.test", "plain line")
    assert inside["request_id"] == "rid-1" and inside["model"] == "iris" and inside["level"] == "WARNING"


def test_exceptions_and_multiline_messages_stay_on_one_line(configure: Configure) -> None:
    out = configure("info", "json")
    with logs.request_context("rid-2", "iris"):
        try:
            raise ZeroDivisionError("no\ndivision")
        except ZeroDivisionError:
            log.exception("predict failed:\nsee below")
    (line,) = lines(out)
    record = json.loads(line)
    assert record["message"] == "predict failed:\nsee below"
    assert str(record["exception"]).startswith("Traceback (most recent call last):")
    assert "ZeroDivisionError: no\ndivision" in str(record["exception"])
    assert record["request_id"] == "rid-2"


def test_text_format_is_todays_plus_the_request(configure: Configure) -> None:
    out = configure("info", "text")
    log.info("outside")
    with logs.request_context("rid-3", "iris"):
        log.info("inside")
    outside, inside = lines(out)
    assert TEXT_LINE.match(outside) and outside.endswith("INFO modelport.test: outside")
    assert TEXT_LINE.match(inside) and inside.endswith("inside [request_id=rid-3 model=iris]")


def test_request_context_is_per_task(configure: Configure) -> None:
    out = configure("info", "json")

    async def handle(rid: str, model: str, entered: asyncio.Event, other: asyncio.Event) -> None:
        with logs.request_context(rid, model):
            entered.set()
            await other.wait()  # both tasks are inside their contexts at once
            log.info("task %s", rid)
            await asyncio.to_thread(log.info, "thread %s", rid)  # threads inherit the task's context
        log.info("after %s", rid)

    async def main() -> None:
        a, b = asyncio.Event(), asyncio.Event()
        await asyncio.gather(handle("A", "m1", a, b), handle("B", "m2", b, a))

    asyncio.run(main())
    got = records(out)
    assert len(got) == 6
    for r in got:
        rid = str(r["message"]).split()[-1]
        if str(r["message"]).startswith("after"):
            assert "request_id" not in r and "model" not in r
        else:
            assert (r["request_id"], r["model"]) == (rid, {"A": "m1", "B": "m2"}[rid])
    assert logs.current() == (None, None)


def test_bind_and_unbind_nest(configure: Configure) -> None:
    outer = logs.bind("outer", "m")
    inner = logs.bind("inner", None)
    assert logs.current() == ("inner", None)
    logs.unbind(inner)
    assert logs.current() == ("outer", "m")
    logs.unbind(outer)
    assert logs.current() == (None, None)


@pytest.mark.parametrize("good", ["abc-123", "0f" * 16, "a" * logs.MAX_REQUEST_ID, "x:y/z=1;trace", "!~"])
def test_sane_client_request_ids_are_kept(good: str) -> None:
    assert logs.request_id_from(good) == good
    assert logs.request_id_from(good.encode()) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a" * (logs.MAX_REQUEST_ID + 1),
        "has space",
        "line\nbreak",
        "tab\t",
        "nul\x00",
        "caf\u00e9",
        "\x7f",
    ],
)
def test_unsafe_client_request_ids_are_replaced(bad: str) -> None:
    for value in (bad, bad.encode("utf-8")):
        got = logs.request_id_from(value)
        assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got)
    assert re.fullmatch(r"[0-9a-f]{32}", logs.request_id_from(None))


def test_new_request_ids_are_unique_in_a_process_and_across_a_fork() -> None:
    ids = {logs.new_request_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in list(ids)[:100])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, logs.new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    mine = logs.new_request_id()
    assert child[:16] != mine[:16]  # a forked child draws its own prefix


def test_access_log_is_off_unless_asked(configure: Configure) -> None:
    out = configure("debug", "json")
    assert not logs.access_enabled()
    logs.access("GET", "/v2/health/ready", 200, 0.001, "rid", ("127.0.0.1", 5000))
    assert lines(out) == []


def test_access_lines_in_json_have_the_fields_and_no_query(configure: Configure) -> None:
    out = configure("warning", "json", access_log=True)  # on whatever the level
    with logs.request_context("ctx-id", "iris"):
        logs.access("POST", "/v2/models/iris/infer?token=s3cr3t", 200, 0.00125, "rid-9", ("127.0.0.1", 5000))
    logs.access("GET", "/nope", 404, 0.5, None, None)
    first, second = records(out)
    assert first["logger"] == "modelport.access" and first["level"] == "INFO"
    assert {
        k: first[k] for k in ("method", "path", "status", "seconds", "request_id", "client", "model")
    } == {
        "method": "POST",
        "path": "/v2/models/iris/infer",
        "status": 200,
        "seconds": 0.00125,
        "request_id": "rid-9",  # the one passed wins over the context's
        "client": "127.0.0.1:5000",
        "model": "iris",
    }
    assert "s3cr3t" not in out.getvalue()
    assert second["status"] == 404 and second["client"] is None and "request_id" not in second


def test_access_lines_in_text_cannot_forge_lines(configure: Configure) -> None:
    out = configure("info", "text", access_log=True)
    logs.access("GET", "/x\n2024-01-01 00:00:00,000 INFO forged: yes", 404, 0.002, "rid", "10.0.0.1:1")
    (line,) = lines(out)
    assert TEXT_LINE.match(line) and 'modelport.access: 10.0.0.1:1 "GET /x\\n2024' in line
    assert line.endswith("404 2.00 ms [request_id=rid]")


def test_uvicorn_loggers_share_the_handler_and_its_access_logger_is_muted(configure: Configure) -> None:
    logging.getLogger("uvicorn.error").addHandler(logging.NullHandler())  # as a dictConfig would leave it
    out = configure("info", "json", access_log=True)
    logging.getLogger("uvicorn.error").info("Uvicorn running on %s", "http://127.0.0.1:1")
    logging.getLogger("uvicorn").warning("top-level")
    assert [(r["logger"], r["message"]) for r in records(out)] == [
        ("uvicorn.error", "Uvicorn running on http://127.0.0.1:1"),
        ("uvicorn", "top-level"),
    ]
    # uvicorn skips its own access lines (query strings, no request id) when this is False.
    assert not logging.getLogger("uvicorn.access").hasHandlers()


def test_configure_again_replaces_the_handler(configure: Configure) -> None:
    first = configure("info", "text")
    second = configure("info", "json")
    log.info("once")
    assert first.getvalue() == "" and len(lines(second)) == 1
    with pytest.raises(ValueError, match="log format"):
        logs.configure("info", "xml")


def test_warnings_are_json_lines_in_json_mode(configure: Configure) -> None:
    import warnings

    out = configure("info", "json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    (record,) = records(out)
    assert record["logger"] == "py.warnings" and "UserWarning: careful" in str(record["message"])
