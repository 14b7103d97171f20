"""Data-quality check results: what a ``check:`` task found, and the events that say so.

A check's result is its task's output (kept also when the check fails the task), and
each finished check is an event ``reactor.check.passed``, ``reactor.check.warned``
(failed with ``severity: warn``) or ``reactor.check.failed``, written in the same
transaction as the task's end, so pipelines and alerts can react to data problems.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from reactor.events import Event
from reactor.specs import CHECK_EVENT_PREFIX, run_event_source
from reactor.store import RunRecord, TaskRecord

__all__ = ["CHECK_TASK_KEY", "CheckResult", "check_events", "check_outcome"]

#: The task type whose ends are also check events.
CHECK_TASK_KEY = "check"

Severity = Literal["warn", "fail"]


@dataclass(frozen=True)
class CheckResult:
    """What one check found: whether it passed, what it saw and what it expected."""

    passed: bool
    severity: Severity
    #: What the check measured: a row count, a number, the rows found (capped), a value.
    observed: Any
    #: What passing means, in words: "no rows", "between 1 and 1000000", "checks:is_fresh is true".
    expectation: str
    message: str = ""

    @property
    def outcome(self) -> str:
        return "passed" if self.passed else "warned" if self.severity == "warn" else "failed"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outcome": self.outcome}


def check_outcome(output: Any) -> str | None:
    """``passed``, ``warned`` or ``failed`` from a check task's stored output, if it has one."""
    if isinstance(output, dict) and output.get("outcome") in ("passed", "warned", "failed"):
        return str(output["outcome"])
    return None


def check_events(run: RunRecord, record: TaskRecord, at: datetime) -> list[Event]:
    """The ``reactor.check.*`` event of a finished check task (none if it never checked:
    a check whose query could not run has no result, only its task's failure)."""
    outcome = check_outcome(record.output)
    if outcome is None:
        return []
    return [
        Event(
            type=f"{CHECK_EVENT_PREFIX}{outcome}",
            source=run_event_source(run.pipeline),
            # Not the task event's id: events are unique by source and id.
            id=f"{run.id}/{record.task_id}/{record.attempts}/check",
            time=record.ended_at or at,
            subject=f"{run.pipeline}/{record.task_id}",
            data={
                "pipeline": run.pipeline,
                "run_id": run.id,
                "task_id": record.task_id,
                **record.output,
            },
        )
    ]
