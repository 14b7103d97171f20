"""The service's own log lines: text or JSON, with the run, task and event they are about."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = [
    "EVENT_ID",
    "LOG_FORMATS",
    "RUN_ID",
    "TASK_ID",
    "ContextFilter",
    "JsonFormatter",
    "LogFormat",
    "event_context",
    "setup_logging",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

#: The run being executed, the task attempt running in it, and the event being decided:
#: set by the executor and the rule loop, copied onto every record by :class:`ContextFilter`.
RUN_ID: ContextVar[str | None] = ContextVar("reactor_run_id", default=None)
TASK_ID: ContextVar[str | None] = ContextVar("reactor_task_id", default=None)
EVENT_ID: ContextVar[str | None] = ContextVar("reactor_event_id", default=None)

_CONTEXT = (("run_id", RUN_ID), ("task_id", TASK_ID), ("event_id", EVENT_ID))
#: Fields a caller may pass with ``extra=`` that a JSON line carries as they are.
_EXTRA_FIELDS = ("pipeline", "status", "trigger", "attempt")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NOISY = ("watchfiles", "uvicorn", "httpx", "httpcore")


@contextmanager
def event_context(event_id: str) -> Iterator[None]:
    """Log lines inside the block name ``event_id``."""
    token = EVENT_ID.set(event_id)
    try:
        yield
    finally:
        EVENT_ID.reset(token)


class ContextFilter(logging.Filter):
    """Copies the run, task and event ids of the current context onto each record
    (an id given with ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ids that are known,
    and the exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, _ in _CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


class _ReactorHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`setup_logging` adds (and only this one is replaced by it)."""


def setup_logging(
    log_format: LogFormat = "text", *, verbose: bool = False, stream: TextIO | None = None
) -> None:
    """Log to ``stream`` (standard error) in ``log_format``, INFO and up (DEBUG if
    ``verbose``); a second call replaces the handler the first one added."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}; use one of {', '.join(LOG_FORMATS)}")
    handler = _ReactorHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, datefmt="%H:%M:%S"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ReactorHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
