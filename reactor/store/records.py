"""What the store keeps: plain records of events, runs, task runs, attempts and logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "AttemptRecord",
    "DeadLetter",
    "EventOutcome",
    "LogLine",
    "ProcessRecord",
    "RunRecord",
    "RunStatus",
    "TaskRecord",
    "WindowRow",
    "child_run_key",
    "parent_of",
]

RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINAL_RUN_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass
class RunRecord:
    id: str
    run_key: str
    pipeline: str
    version: str
    status: str
    params: dict[str, Any]
    trigger: str | None
    event_ids: list[str]
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    seq: int | None = None
    owner: str | None = None

    @property
    def parent(self) -> dict[str, str] | None:
        """``{run_id, task_id}`` of the ``run_pipeline:`` task that started this run, if any."""
        return parent_of(self.run_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "version": self.version,
            "status": self.status,
            "params": self.params,
            "trigger": self.trigger,
            "event_ids": self.event_ids,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "reason": self.reason,
            "parent": self.parent,
        }


_PARENT = "/parent:"


def child_run_key(pipeline: str, parent_run: str, task_id: str, attempt: int) -> str:
    """The run key of the run a ``run_pipeline:`` task attempt starts: the same attempt
    never starts two runs, and the key names the parent (run ids and task ids hold no ``/``)."""
    return f"{pipeline}{_PARENT}{parent_run}/{task_id}/{attempt}"


def parent_of(run_key: str) -> dict[str, str] | None:
    """The parent named in a child run's key (see :func:`child_run_key`), else ``None``."""
    _, sep, rest = run_key.partition(_PARENT)
    parts = rest.split("/")
    if not sep or len(parts) != 3:
        return None
    return {"run_id": parts[0], "task_id": parts[1]}


@dataclass
class TaskRecord:
    run_id: str
    task_id: str
    status: str = "pending"
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    output: Any = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "status": self.status,
            "attempts": self.attempts,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "output": self.output,
            "error": self.error,
        }


@dataclass
class AttemptRecord:
    """One try of a task, owned by one process that heartbeats while it runs."""

    run_id: str
    task_id: str
    attempt: int
    status: str
    owner: str
    started_at: datetime
    heartbeat_at: datetime
    ended_at: datetime | None = None
    error: str | None = None
    host: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A ``reactor serve`` process: who it is and when it last showed it was alive."""

    owner: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class LogLine:
    run_id: str
    task_id: str
    attempt: int
    stream: str
    time: datetime
    line: str
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "stream": self.stream,
            "time": self.time.isoformat(),
            "line": self.line,
        }


@dataclass
class EventOutcome:
    """What the rule engine decided for one event: per trigger, fired or why not."""

    decisions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something a sensor received but could not turn into an event, and why."""

    trigger_key: str
    reason: str
    payload: Any
    time: datetime
    #: Where it came from in its source (``topic/partition/offset``, a row key, ...).
    ref: str | None = None
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "trigger": self.trigger_key,
            "ref": self.ref,
            "reason": self.reason,
            "payload": self.payload,
            "time": self.time.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class WindowRow:
    """The saved state of one trigger window (a batch, a correlation group, a dedupe key,
    a rate limit); ``state`` ``None`` closes it. A row is replaced only by a higher
    ``version``, so writes that commit out of order never bring back an older state."""

    trigger_key: str
    window_key: str
    version: int
    state: dict[str, Any] | None
    deadline: datetime | None
