"""Re-drive: stored events decided again by today's triggers; run keys make it safe."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from reactor.backfill import BackfillError, parse_instant
from reactor.durations import parse_duration
from reactor.errors import ReactorError
from reactor.store.base import StoredEvent

__all__ = [
    "MAX_EVENTS",
    "EventRedriven",
    "RedriveError",
    "RedriveRequest",
    "Redriven",
    "UnknownEvent",
    "parse_request",
]

#: One re-drive decides at most this many events: a filter that matches more is refused.
MAX_EVENTS = 10_000

_FIELDS = (
    "id",
    "source",
    "type",
    "from",
    "to",
    "dead_letter",
    "decode",
    "pipeline",
    "trigger",
    "dry_run",
    "limit",
)
_SHAPE = (
    '{"id": ..., "source"?: ...} or {"type": "GLOB", "from": TIME, "to"?: TIME}'
    ' or {"dead_letter": SEQ, "decode"?: ...} with "pipeline"?, "trigger"?, "dry_run"?,'
    ' "limit"?'
)


class RedriveError(ReactorError):
    """A re-drive cannot be done as asked (its filter, its triggers, too many events)."""


class UnknownEvent(RedriveError):
    """The event (or dead letter) asked for is not stored."""


@dataclass(frozen=True, slots=True)
class RedriveRequest:
    """What to re-drive: one event (``event_id``), those of ``type_glob`` received in
    ``[start, end)``, or the event a dead letter stands for (``dead_letter``, its seq,
    rebuilt with ``decode`` or its trigger's own decoding); ``pipeline``/``trigger``
    restrict which triggers decide again."""

    event_id: str | None = None
    source: str | None = None
    type_glob: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    pipeline: str | None = None
    trigger: str | None = None
    dry_run: bool = False
    limit: int = MAX_EVENTS
    dead_letter: int | None = None
    decode: str | None = None

    def selects(self, stored: StoredEvent) -> bool:
        """Whether ``stored`` (received in the window already) passes the type filter."""
        return self.type_glob is None or fnmatchcase(stored.event.type, self.type_glob)


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise RedriveError(f"{name} must be a non-empty string")
    return value


def parse_request(body: Any, now: datetime) -> RedriveRequest:
    """Read a ``POST /api/events/redrive`` body; :class:`RedriveError` names what is wrong.

    ``from`` is a time (``2026-01-01``, ISO 8601) or a duration back from ``now`` (``2h``).
    """
    if not isinstance(body, dict):
        raise RedriveError(f"body must be an object like {_SHAPE}")
    if unknown := sorted(set(body) - set(_FIELDS)):
        raise RedriveError(f"unknown field(s) {', '.join(unknown)}; a re-drive takes {_SHAPE}")
    event_id, source, type_glob = _text(body, "id"), _text(body, "source"), _text(body, "type")
    pipeline, trigger = _text(body, "pipeline"), _text(body, "trigger")
    if trigger is not None and pipeline is None:
        raise RedriveError("trigger needs pipeline (a trigger id is unique within its pipeline)")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise RedriveError("dry_run must be true or false")
    limit = body.get("limit", MAX_EVENTS)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_EVENTS:
        raise RedriveError(f"limit must be a whole number from 1 to {MAX_EVENTS}, got {limit!r}")
    dead_letter, decode = body.get("dead_letter"), _text(body, "decode")
    if dead_letter is not None:
        return _dead_letter_request(body, dead_letter, decode, pipeline, trigger, dry_run)
    if decode is not None:
        raise RedriveError("decode goes with dead_letter (it says how to read the letter's value)")
    if event_id is not None:
        if any(body.get(name) is not None for name in ("type", "from", "to")):
            raise RedriveError("id re-drives one event: give it without type, from or to")
        return RedriveRequest(
            event_id=event_id, source=source, pipeline=pipeline, trigger=trigger, dry_run=dry_run
        )
    if source is not None:
        raise RedriveError("source goes with id (an event id is unique per source)")
    if type_glob is None or body.get("from") is None:
        raise RedriveError(f"give id, or type and from: {_SHAPE}")
    start = _instant(body["from"], "from", now)
    end = _instant(body["to"], "to", now) if body.get("to") is not None else None
    if end is not None and end <= start:
        raise RedriveError(f"to ({end.isoformat()}) must be after from ({start.isoformat()})")
    return RedriveRequest(
        type_glob=type_glob,
        start=start,
        end=end,
        pipeline=pipeline,
        trigger=trigger,
        dry_run=dry_run,
        limit=limit,
    )


def _dead_letter_request(
    body: dict[str, Any],
    seq: Any,
    decode: str | None,
    pipeline: str | None,
    trigger: str | None,
    dry_run: bool,
) -> RedriveRequest:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise RedriveError(
            f"dead_letter must be a dead letter's seq (a whole number >= 1), got {seq!r}"
        )
    if others := [
        n for n in ("id", "source", "type", "from", "to", "limit") if body.get(n) is not None
    ]:
        raise RedriveError(
            f"dead_letter re-drives one dead letter: give it without {', '.join(others)}"
        )
    if dry_run:
        raise RedriveError(
            "dry_run does not go with dead_letter: re-driving a letter stores its event"
            " (re-drive it again later: it starts no second run)"
        )
    return RedriveRequest(dead_letter=seq, decode=decode, pipeline=pipeline, trigger=trigger)


def _instant(value: Any, name: str, now: datetime) -> datetime:
    if not isinstance(value, str) or not value:
        raise RedriveError(f"{name} must be a time (2026-01-01, ISO 8601) or a duration (2h)")
    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        return parse_instant(value, name)
    except BackfillError as exc:
        raise RedriveError(f"{exc}, or a duration back from now like 2h") from None


@dataclass(slots=True)
class EventRedriven:
    """One event decided again: each re-decided trigger's record, and its runs."""

    stored: StoredEvent
    decisions: list[dict[str, Any]]
    new_run_ids: list[str] = field(default_factory=list)
    existing_run_ids: list[str] = field(default_factory=list)
    #: A dry run: how many runs re-driving it would start.
    would_start: int = 0

    def to_json(self) -> dict[str, Any]:
        event = self.stored.event
        return {
            "event": {
                "id": event.id,
                "source": event.source,
                "type": event.type,
                "received_at": self.stored.received_at.isoformat(),
            },
            "decisions": self.decisions,
            "new_run_ids": self.new_run_ids,
            "existing_run_ids": self.existing_run_ids,
            "would_start": self.would_start,
        }


@dataclass(slots=True)
class Redriven:
    """What a re-drive did (or, ``dry_run``, would do), event by event."""

    dry_run: bool
    actor: str
    events: list[EventRedriven]

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "actor": self.actor,
            "count": len(self.events),
            "new_run_ids": [r for e in self.events for r in e.new_run_ids],
            "existing_run_ids": [r for e in self.events for r in e.existing_run_ids],
            "would_start": sum(e.would_start for e in self.events),
            "events": [e.to_json() for e in self.events],
        }
