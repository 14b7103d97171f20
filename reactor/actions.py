"""The Action protocol: how a connector runs one task attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from reactor.store.records import RunRecord

__all__ = ["Action", "ChildRuns", "LogStream", "TaskRequest"]

LogStream = Literal["stdout", "stderr", "system"]


class ChildRuns(Protocol):
    """Runs of other pipelines started by a task (``run_pipeline:``), as the service has them."""

    async def start_child(self, pipeline: str, params: Mapping[str, Any], key: str) -> RunRecord:
        """Admit a run of ``pipeline`` under run key ``key`` (the same key: the same run).

        Raises :class:`reactor.errors.AdmissionError` (unknown pipeline, bad params, ...).
        """
        ...

    async def wait_child(self, run_id: str) -> tuple[RunRecord, dict[str, Any]]:
        """The run once it is final, and its tasks' outputs by task id."""
        ...

    async def cancel_child(self, run_id: str, reason: str) -> None: ...


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
    #: Starting and awaiting runs of other pipelines (``None`` outside a service).
    children: ChildRuns | None = None


class Action(Protocol):
    """Runs one task attempt and returns its output (JSON-serialisable).

    Raises :class:`reactor.errors.ActionError` with a message for the user on
    failure. Cancel-safe; never retries by itself (the executor owns retries).
    """

    async def execute(self, request: TaskRequest) -> Any: ...
