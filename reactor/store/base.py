"""The Store protocol: the source of truth every part of Reactor reads and writes."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from reactor.assets import AssetSummary, AssetUse
from reactor.audit import AuditEntry
from reactor.events import Event
from reactor.pauses import Pause
from reactor.store.records import (
    AttemptRecord,
    DeadLetter,
    LogLine,
    ProcessRecord,
    RunRecord,
    TaskRecord,
    WindowRow,
)

__all__ = ["Admitted", "BackfillRow", "OutcomeToRecord", "Store", "StoredEvent", "TaskEvent"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    seq: int
    received_at: datetime
    outcome: list[dict[str, Any]] | None
    #: When the rule engine's outcome was recorded (``None``: not evaluated yet).
    evaluated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as the API lists it (``outcome`` ``None``: not evaluated yet)."""
        event = self.event
        return {
            "seq": self.seq,
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "time": event.time.isoformat(),
            "received_at": self.received_at.isoformat(),
            "data": _finite(event.data),
            "outcome": _finite(self.outcome),
        }


def _finite(value: Any) -> Any:
    """``value`` with the floats JSON cannot carry (NaN, infinities) as ``None``: a sensor
    may store them (Python's json reads them), and a response must stay JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """A task's state change as an event; ``evaluate`` is ``False`` when no trigger can
    match it, and it is then stored as evaluated (with no decisions) at ``at``."""

    event: Event
    evaluate: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class OutcomeToRecord:
    """One event's outcome, the runs it starts and the windows it changed."""

    event: Event
    decisions: list[dict[str, Any]]
    runs: Sequence[RunRecord]
    windows: Sequence[WindowRow] = ()


@dataclass(frozen=True, slots=True)
class Admitted:
    """A run handed to admission: ``new`` is ``False`` when its run key existed already."""

    run: RunRecord
    new: bool


@dataclass(slots=True)
class BackfillRow:
    """A backfill as stored: one run per logical time in ``[start, end)`` of ``pipeline``;
    ``step`` in seconds, ``None`` for the pipeline's schedule ticks."""

    id: str
    pipeline: str
    start: datetime
    end: datetime
    step: float | None
    params: dict[str, Any]
    concurrency: int
    #: How many runs it asks for (one per logical time).
    total: int
    status: str
    created_at: datetime
    actor: str
    ended_at: datetime | None = None
    reason: str | None = None

    def values(self) -> tuple[Any, ...]:
        """The row, in the column order of the ``backfills`` table."""
        return (
            self.id,
            self.pipeline,
            self.start.isoformat(),
            self.end.isoformat(),
            self.step,
            json.dumps(self.params, sort_keys=True),
            self.concurrency,
            self.total,
            self.status,
            self.created_at.isoformat(),
            self.ended_at.isoformat() if self.ended_at else None,
            self.reason,
            self.actor,
        )

    @classmethod
    def from_row(cls, row: Any) -> BackfillRow:
        ended = row["ended_at"]
        return cls(
            id=row["id"],
            pipeline=row["pipeline"],
            start=datetime.fromisoformat(row["from_time"]),
            end=datetime.fromisoformat(row["to_time"]),
            step=row["step"],
            params=json.loads(row["params"]),
            concurrency=row["concurrency"],
            total=row["total"],
            status=row["status"],
            created_at=datetime.fromisoformat(row["created_at"]),
            actor=row["actor"],
            ended_at=datetime.fromisoformat(ended) if ended else None,
            reason=row["reason"],
        )


#: The columns of the ``backfills`` table, in the order of :meth:`BackfillRow.values`.
BACKFILL_COLUMNS = (
    "id, pipeline, from_time, to_time, step, params, concurrency, total, status, created_at,"
    " ended_at, reason, actor"
)

#: The columns of the ``incidents`` table, in the order of :func:`incident_values`.
INCIDENT_COLUMNS = "id, route, pipeline, kind, status, opened_at, updated_at, closed_at, state"


def incident_values(incident: Mapping[str, Any]) -> tuple[Any, ...]:
    """A row of the ``incidents`` table from an incident's JSON."""
    return (
        incident["id"],
        incident["route"],
        incident["pipeline"],
        incident["kind"],
        "open" if incident["closed_at"] is None else "closed",
        incident["opened_at"],
        incident["last_at"],
        incident["closed_at"],
        json.dumps(incident, sort_keys=True),
    )


class Store(Protocol):
    """Durable state. Every method is one transaction; a method returns once it is durable."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # Events
    async def ingest(
        self, event: Event, received_at: datetime, *, evaluated: bool = False
    ) -> tuple[str, bool]:
        """Persist ``event`` unless ``(source, id)`` is known; ``(event_id, new)``.

        ``evaluated``: no trigger can match it, so it is stored as evaluated (no decisions).
        """
        ...

    async def ingest_many(
        self,
        events: Sequence[Event],
        received_at: datetime,
        cursor: tuple[str, Any] | None = None,
    ) -> list[tuple[str, bool]]:
        """Persist ``events`` (each unless known) and a sensor's ``(trigger_key, cursor)``,
        all in one transaction: a cursor never runs ahead of the events it covers."""
        ...

    async def get_event(self, source: str, event_id: str) -> StoredEvent | None: ...

    async def find_event(self, event_id: str) -> StoredEvent | None: ...

    async def find_events(self, event_id: str, limit: int) -> list[StoredEvent]:
        """The events with this id from any source, first stored first (ids are per source)."""
        ...

    async def events_received(
        self, since: datetime, *, after: tuple[datetime, int] | None = None, limit: int
    ) -> list[StoredEvent]:
        """Events received at or after ``since``, in the order received; ``after`` is the
        ``(received_at, seq)`` of the last event of the previous page."""
        ...

    async def last_event(self, source: str) -> StoredEvent | None:
        """The event from ``source`` stored last (a sensor's own events: where it left off)."""
        ...

    async def list_events(
        self,
        *,
        limit: int,
        before: int | None = None,
        type_pattern: str | None = None,
        source: str | None = None,
        exclude_prefixes: Sequence[str] = (),
    ) -> list[StoredEvent]:
        """Up to ``limit`` events, newest first (by ``seq``), walked in ``seq`` order.

        ``before``: only those with a ``seq`` below it (the ``seq`` of the last event of
        the previous page); ``type_pattern``: a glob on the type where ``*`` matches any
        run of characters and everything else only itself, case included (no ``*``: the
        exact type); ``source``: this source only; ``exclude_prefixes``: without the
        events whose type starts with one of these.
        """
        ...

    async def unevaluated_events(self, limit: int) -> list[StoredEvent]: ...

    async def record_outcome(
        self,
        event: Event,
        decisions: list[dict[str, Any]],
        runs: Sequence[RunRecord],
        at: datetime,
        windows: Sequence[WindowRow] = (),
    ) -> list[Admitted]:
        """Create ``runs`` (idempotent by run key), the event's outcome and the trigger
        windows it changed, atomically."""
        ...

    async def record_outcomes(
        self, outcomes: Sequence[OutcomeToRecord], at: datetime
    ) -> list[list[Admitted] | Exception]:
        """:meth:`record_outcome` for each, each atomic on its own, in as few round trips
        as the store allows; a failure is returned in its place (the others are recorded)."""
        ...

    # Trigger windows
    async def save_windows(
        self, windows: Sequence[WindowRow], runs: Sequence[RunRecord], at: datetime
    ) -> list[Admitted]:
        """Save window states and create the runs a window's end starts, atomically."""
        ...

    async def open_windows(self) -> list[WindowRow]:
        """Every window not closed, with its state."""
        ...

    async def prune_windows(self, before: datetime) -> int:
        """Delete closed windows, and windows whose deadline passed before ``before``
        that nothing fires for (dedupe keys); how many went."""
        ...

    # Sensors
    async def get_cursor(self, trigger_key: str) -> Any | None:
        """Where a sensor left off (JSON), or ``None`` if it never saved a cursor."""
        ...

    async def save_cursor(self, trigger_key: str, cursor: Any, at: datetime) -> None: ...

    async def add_dead_letter(self, letter: DeadLetter) -> int:
        """Record ``letter``; its sequence number."""
        ...

    async def dead_letters(
        self, trigger_key: str | None = None, *, limit: int = 100, before: int | None = None
    ) -> list[DeadLetter]:
        """Newest first."""
        ...

    # Pipelines
    async def save_pipeline_version(
        self, pipeline: str, version: str, path: str, text: str, at: datetime
    ) -> None: ...

    async def pipeline_version(self, pipeline: str, version: str) -> str | None: ...

    # Pauses
    async def pauses(self) -> list[Pause]:
        """Every paused pipeline and trigger, by key."""
        ...

    async def add_audit(self, entry: AuditEntry) -> None:
        """Record an operator action (who did what to what, when)."""
        ...

    async def audit(
        self, *, limit: int, before: int | None = None, target: str | None = None
    ) -> list[AuditEntry]:
        """Operator actions, newest first; ``before``: those with a smaller ``seq``;
        ``target``: only those on that pipeline, run, backfill or event."""
        ...

    async def add_pause(self, pause: Pause) -> bool:
        """Record ``pause``; ``False`` (and nothing changes) if its key is paused already."""
        ...

    async def remove_pause(self, key: str) -> Pause | None:
        """Delete the pause of ``key`` and return it; ``None`` if ``key`` was not paused."""
        ...

    # Runs
    async def create_run(self, run: RunRecord) -> Admitted: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self, *, pipeline: str | None, limit: int, before: int | None
    ) -> list[RunRecord]: ...

    async def runs_with_status(
        self, status: str, pipeline: str | None = None
    ) -> list[RunRecord]: ...

    async def runs_without_event(self, source_prefix: str, limit: int) -> list[RunRecord]:
        """Final runs with no event ``(source_prefix + pipeline, run id)`` stored, oldest first.

        A run's end becomes such an event just after it is recorded; these are the runs
        whose event a crash in between lost.
        """
        ...

    async def set_run_status(
        self,
        run_id: str,
        status: str,
        *,
        at: datetime,
        reason: str | None = None,
        owner: str | None = None,
    ) -> None:
        """Set the status and its timestamp (set once); ``owner`` claims a running run."""
        ...

    async def claim_run(self, run_id: str, old_owner: str | None, new_owner: str) -> bool:
        """Take over a run from ``old_owner``; ``False`` if someone else already did."""
        ...

    async def reopen_run(
        self,
        run_id: str,
        *,
        version: str,
        params: dict[str, Any],
        reason: str,
        owner: str,
        at: datetime,
    ) -> bool:
        """Set a finished run ``running`` again (a repair) owned by ``owner``, with ``version``,
        ``params`` and ``reason``, started ``at`` and its end cleared; ``False`` if it is
        not finished."""
        ...

    # Tasks
    async def save_tasks(
        self,
        tasks: Sequence[TaskRecord],
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[TaskEvent] = (),
    ) -> list[Event]:
        """Save task and attempt states and the events they make, in one transaction.

        Returns the events that were new and still need the rule engine (``evaluate``).
        """
        ...

    async def task_runs(self, run_id: str) -> list[TaskRecord]: ...

    async def attempts(self, run_id: str) -> list[AttemptRecord]: ...

    async def running_attempts(self) -> list[AttemptRecord]:
        """Every attempt still marked running, whoever owns it."""
        ...

    async def register_process(self, process: ProcessRecord) -> None: ...

    async def processes(self) -> list[ProcessRecord]: ...

    async def heartbeat(self, owner: str, at: datetime) -> None:
        """Mark ``owner`` alive: its process row and its running attempts."""
        ...

    # Logs
    async def append_logs(self, lines: Sequence[LogLine]) -> None: ...

    async def logs(
        self, run_id: str, *, after: int, limit: int, task_id: str | None = None
    ) -> list[LogLine]:
        """The run's log lines with a ``seq`` above ``after``, in order; ``task_id``: that
        task's lines only."""
        ...

    # Retention
    async def run_pipelines(self) -> list[str]:
        """The names of the pipelines that have runs stored, in name order."""
        ...

    async def prune_runs(
        self, pipeline: str, *, ended_before: datetime | None, keep: int, limit: int
    ) -> tuple[int, int]:
        """Delete up to ``limit`` final runs of ``pipeline`` (oldest first) with their task
        runs, attempts and log lines: those that ended before ``ended_before`` (``None``:
        any) and are not among its newest ``keep`` final runs; ``(runs, log lines)`` gone."""
        ...

    async def prune_events(
        self, before: datetime, *, keep: Collection[tuple[str, str]], limit: int
    ) -> int:
        """Delete up to ``limit`` evaluated events received before ``before``, except those
        a stored run names (its ``event_ids``, or its end event) and the ``(source, id)``
        pairs in ``keep``; how many went."""
        ...

    # Backfills
    async def create_backfill(self, backfill: BackfillRow) -> tuple[BackfillRow, bool]:
        """Store ``backfill`` unless its id exists; ``(the stored one, new)``."""
        ...

    async def get_backfill(self, backfill_id: str) -> BackfillRow | None: ...

    async def list_backfills(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[BackfillRow]:
        """Newest first; only those with ``status`` if given."""
        ...

    async def set_backfill_status(
        self, backfill_id: str, status: str, *, at: datetime | None, reason: str | None = None
    ) -> None:
        """Set the status; ``at`` is when it ended (``None`` while it runs)."""
        ...

    async def runs_with_key_prefix(self, pipeline: str, prefix: str) -> list[RunRecord]:
        """The runs of ``pipeline`` whose run key starts with ``prefix``, oldest first."""
        ...

    # Lineage
    async def record_assets(self, uses: Sequence[AssetUse]) -> None:
        """Record what task attempts read and wrote (a use recorded before is kept as is)."""
        ...

    async def list_assets(self, *, limit: int) -> list[AssetSummary]:
        """Up to ``limit`` assets in name order, each with its last write, writers, readers."""
        ...

    async def asset_history(
        self, asset: str, *, limit: int, before: int | None = None
    ) -> list[tuple[int, AssetUse]]:
        """``(seq, use)`` of ``asset``'s reads and writes, newest first; ``before``: only
        those with a ``seq`` below it (the last of the previous page)."""
        ...

    # Alert incidents
    async def save_incidents(self, incidents: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace each incident (``Incident.to_json()`` of reactor/alerting)."""
        ...

    async def incidents(self, *, include_closed: bool, limit: int) -> list[dict[str, Any]]:
        """Stored incidents as saved, newest opened first; open ones only unless
        ``include_closed``."""
        ...
