"""Routing what python tasks print into their run's log, whichever thread they run in."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from reactor.actions import LogStream

__all__ = ["captured_output"]

_Sink = Callable[[LogStream, str], None]
_current: ContextVar[tuple[_Sink, dict[LogStream, str]] | None] = ContextVar(
    "reactor_task_output", default=None
)


class _TaskStream:
    """Stands in for ``sys.stdout``/``sys.stderr``: a task's lines go to its log,
    everything else to the stream it replaced."""

    def __init__(self, name: LogStream, wrapped: TextIO) -> None:
        self.name = name
        self.wrapped = wrapped

    def write(self, text: str) -> int:
        current = _current.get()
        if current is None:
            return self.wrapped.write(text)
        sink, partial = current
        pending = partial.get(self.name, "") + text
        *lines, partial[self.name] = pending.split("\n")
        for line in lines:
            sink(self.name, line)
        return len(text)

    def flush(self) -> None:
        if _current.get() is None:
            self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def _install() -> None:
    # Checked on every use: test runners and other tools swap the streams themselves.
    if not isinstance(sys.stdout, _TaskStream):
        sys.stdout = _TaskStream("stdout", sys.stdout)
    if not isinstance(sys.stderr, _TaskStream):
        sys.stderr = _TaskStream("stderr", sys.stderr)


@contextmanager
def captured_output(sink: _Sink) -> Iterator[None]:
    """Within this context (and threads started with a copy of it), print() goes to ``sink``."""
    _install()
    partial: dict[LogStream, str] = {}
    token = _current.set((sink, partial))
    try:
        yield
    finally:
        _current.reset(token)
        for name, rest in partial.items():
            if rest:
                sink(name, rest)
