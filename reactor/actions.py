"""The Action protocol: how a connector runs one task attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = ["Action", "LogStream", "TaskRequest"]

LogStream = Literal["stdout", "stderr", "system"]


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One attempt of one task: who, where, the template scope and a log sink."""

    run_id: str
    pipeline: str
    task_id: str
    attempt: int
    scope: Mapping[str, Any]
    base_dir: Path
    log: Callable[[LogStream, str], None]
    #: Actions that start a process group report its id, so crash recovery can kill it.
    report_process: Callable[[int], Awaitable[None]] | None = None
    #: The URL of a ``connection:`` (inline, or a name in ``reactor.yaml``); raises
    #: :class:`reactor.errors.ConnectorError`.
    connection: Callable[[str], str] | None = None


class Action(Protocol):
    """Runs one task attempt and returns its output (JSON-serialisable).

    Raises :class:`reactor.errors.ActionError` with a message for the user on
    failure. Cancel-safe; never retries by itself (the executor owns retries).
    """

    async def execute(self, request: TaskRequest) -> Any: ...
