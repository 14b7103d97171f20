"""Log lines as JSON: the fields, the ids taken from the context, exceptions, and the
handler that ``reactor serve`` / ``reactor run`` install."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from reactor.logs import EVENT_ID, RUN_ID, TASK_ID, event_context, setup_logging


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What the root logger writes, as ``--log-format json`` sets it up."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    setup_logging("json", stream=stream)
    try:
        yield stream
    finally:
        for handler in root.handlers[:]:
            if getattr(handler, "stream", None) is stream:
                root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_has_time_level_logger_and_message_and_only_the_ids_known(logged) -> None:
    logging.getLogger("reactor.test").warning("disk %s is %d%% full", "sda", 91)

    [line] = lines(logged)
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["level"] == "warning"
    assert line["logger"] == "reactor.test"
    assert line["message"] == "disk sda is 91% full"
    assert line["time"].endswith("+00:00")


def test_the_run_task_and_event_ids_come_from_the_context(logged) -> None:
    tokens = [RUN_ID.set("run-1"), TASK_ID.set("load"), EVENT_ID.set("ev-9")]
    try:
        logging.getLogger("reactor.executor").info("working")
    finally:
        for var, token in zip((RUN_ID, TASK_ID, EVENT_ID), tokens, strict=True):
            var.reset(token)
    logging.getLogger("reactor.executor").info("outside")

    inside, outside = lines(logged)
    assert (inside["run_id"], inside["task_id"], inside["event_id"]) == ("run-1", "load", "ev-9")
    assert "run_id" not in outside and "task_id" not in outside


def test_ids_given_with_the_record_win_and_known_extras_are_kept(logged) -> None:
    token = RUN_ID.set("run-of-the-context")
    try:
        logging.getLogger("reactor.runs").info(
            "run r2 nightly succeeded",
            extra={"run_id": "r2", "pipeline": "nightly", "status": "succeeded", "secret": "x"},
        )
    finally:
        RUN_ID.reset(token)

    [line] = lines(logged)
    assert line["run_id"] == "r2"
    assert (line["pipeline"], line["status"]) == ("nightly", "succeeded")
    assert "secret" not in line  # only the documented fields go out


def test_an_exception_is_in_its_line(logged) -> None:
    try:
        raise ValueError("bad row 7")
    except ValueError:
        logging.getLogger("reactor").exception("loading failed")

    [line] = lines(logged)
    assert line["message"] == "loading failed"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ValueError: bad row 7")
    assert line["level"] == "error"


def test_event_context_names_the_event_inside_the_block_only(logged) -> None:
    log = logging.getLogger("reactor")
    with event_context("ev-1"):
        log.info("deciding")
    log.info("after")

    inside, after = lines(logged)
    assert inside["event_id"] == "ev-1"
    assert "event_id" not in after


def test_setting_up_again_replaces_the_handler_and_keeps_others(logged) -> None:
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    second = io.StringIO()
    try:
        setup_logging("text", stream=second)
        logging.getLogger("reactor").info("once")
        assert other in root.handlers
    finally:
        root.removeHandler(other)
        for handler in root.handlers[:]:
            if getattr(handler, "stream", None) is second:
                root.removeHandler(handler)

    assert logged.getvalue() == ""
    assert second.getvalue().rstrip().endswith("INFO reactor: once")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'; use one of text, json"):
        setup_logging("xml")  # type: ignore[arg-type]
