"""Records to and from table rows, the same for every store (the schema is shared)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from reactor.events import Event
from reactor.store.base import StoredEvent
from reactor.store.records import AttemptRecord, DeadLetter, RunRecord, TaskRecord, WindowRow

__all__ = [
    "ATTEMPT_COLUMNS",
    "DEAD_LETTER_COLUMNS",
    "EVENT_COLUMNS",
    "PRUNE_WINDOWS",
    "RUN_COLUMNS",
    "RUN_FIELDS",
    "SAVE_WINDOW",
    "WINDOW_COLUMNS",
    "attempt_from",
    "attempt_values",
    "dead_letter_from",
    "dt",
    "event_from",
    "event_values",
    "run_from",
    "run_values",
    "task_values",
    "ts",
    "window_from",
    "window_values",
]

# Timestamps are ISO 8601 text in UTC, so both stores sort and compare them alike.
RUN_FIELDS = (
    "id, run_key, pipeline, version, status, params, trigger, event_ids, created_at,"
    " started_at, ended_at, reason, owner"
)
RUN_COLUMNS = f"seq, {RUN_FIELDS}"
ATTEMPT_COLUMNS = (
    "run_id, task_id, attempt, status, owner, started_at, heartbeat_at, ended_at, error, host, pid"
)
EVENT_COLUMNS = "seq, body, received_at, outcome, evaluated_at"
DEAD_LETTER_COLUMNS = "seq, trigger_key, ref, reason, payload, time"


def ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def run_values(run: RunRecord) -> tuple[Any, ...]:
    """The values of :data:`RUN_FIELDS`, in order."""
    return (
        run.id,
        run.run_key,
        run.pipeline,
        run.version,
        run.status,
        json.dumps(run.params),
        run.trigger,
        json.dumps(run.event_ids),
        ts(run.created_at),
        ts(run.started_at),
        ts(run.ended_at),
        run.reason,
        run.owner,
    )


def run_from(row: Mapping[str, Any]) -> RunRecord:
    """A run from a row of :data:`RUN_COLUMNS`."""
    return RunRecord(
        id=row["id"],
        run_key=row["run_key"],
        pipeline=row["pipeline"],
        version=row["version"],
        status=row["status"],
        params=json.loads(row["params"]),
        trigger=row["trigger"],
        event_ids=json.loads(row["event_ids"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        started_at=dt(row["started_at"]),
        ended_at=dt(row["ended_at"]),
        reason=row["reason"],
        seq=row["seq"],
        owner=row["owner"],
    )


def task_values(task: TaskRecord) -> tuple[Any, ...]:
    """The values of the ``task_runs`` columns, in table order."""
    return (
        task.run_id,
        task.task_id,
        task.status,
        task.attempts,
        ts(task.started_at),
        ts(task.ended_at),
        json.dumps(task.output, default=str),
        task.error,
    )


def attempt_values(attempt: AttemptRecord) -> tuple[Any, ...]:
    """The values of :data:`ATTEMPT_COLUMNS`, in order."""
    return (
        attempt.run_id,
        attempt.task_id,
        attempt.attempt,
        attempt.status,
        attempt.owner,
        ts(attempt.started_at),
        ts(attempt.heartbeat_at),
        ts(attempt.ended_at),
        attempt.error,
        attempt.host,
        attempt.pid,
    )


def attempt_from(row: Mapping[str, Any]) -> AttemptRecord:
    """An attempt from a row of :data:`ATTEMPT_COLUMNS`."""
    return AttemptRecord(
        run_id=row["run_id"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        status=row["status"],
        owner=row["owner"],
        started_at=datetime.fromisoformat(row["started_at"]),
        heartbeat_at=datetime.fromisoformat(row["heartbeat_at"]),
        ended_at=dt(row["ended_at"]),
        error=row["error"],
        host=row["host"],
        pid=row["pid"],
    )


def event_from(row: Mapping[str, Any]) -> StoredEvent:
    """A stored event from a row of :data:`EVENT_COLUMNS`."""
    data = json.loads(row["body"])
    event = Event(
        type=data.pop("type"),
        source=data.pop("source"),
        id=data.pop("id"),
        time=datetime.fromisoformat(data.pop("time")),
        subject=data.pop("subject", None),
        datacontenttype=data.pop("datacontenttype", "application/json"),
        data=data.pop("data", None),
        extensions={k: v for k, v in data.items() if k != "specversion"},
    )
    outcome = row["outcome"]
    return StoredEvent(
        event,
        row["seq"],
        datetime.fromisoformat(row["received_at"]),
        json.loads(outcome) if outcome else None,
        dt(row["evaluated_at"]),
    )


def event_values(event: Event, received_at: datetime) -> tuple[Any, ...]:
    """``(id, source, type, subject, time, received_at, body)`` of a new event row."""
    return (
        event.id,
        event.source,
        event.type,
        event.subject,
        ts(event.time),
        ts(received_at),
        event.to_json(),
    )


def dead_letter_from(row: Any) -> DeadLetter:
    seq, trigger_key, ref, reason, payload, time = row
    return DeadLetter(
        trigger_key=trigger_key,
        reason=reason,
        payload=json.loads(payload),
        time=datetime.fromisoformat(time),
        ref=ref,
        seq=seq,
    )


WINDOW_COLUMNS = "trigger_key, window_key, version, state, deadline"
# A row is replaced only by a higher version: writes committed out of order (PostgreSQL
# commits concurrent outcomes in any order) never bring an older state back.
SAVE_WINDOW = (
    "INSERT INTO trigger_windows (trigger_key, window_key, version, state, deadline, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (trigger_key, window_key) DO UPDATE SET"
    " version = excluded.version, state = excluded.state, deadline = excluded.deadline,"
    " updated_at = excluded.updated_at WHERE trigger_windows.version < excluded.version"
)
# Closed windows long enough ago that no write of theirs is still on its way, and dedupe
# keys whose period is over.
PRUNE_WINDOWS = (
    "DELETE FROM trigger_windows WHERE (state IS NULL AND updated_at < $1)"
    " OR (window_key LIKE 'dedupe:%' AND deadline < $1)"
)


def window_values(window: WindowRow, at: datetime) -> tuple[Any, ...]:
    return (
        window.trigger_key,
        window.window_key,
        window.version,
        json.dumps(window.state, default=str) if window.state is not None else None,
        ts(window.deadline),
        ts(at),
    )


def window_from(row: Any) -> WindowRow:
    trigger_key, window_key, version, state, deadline = row
    return WindowRow(
        trigger_key, window_key, int(version), json.loads(state) if state else None, dt(deadline)
    )
