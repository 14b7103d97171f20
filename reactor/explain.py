"""Why an event fired or did not fire each trigger, and why a pipeline did (not) run."""

from __future__ import annotations

import fnmatch
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reactor.events import Event
from reactor.pipelines import Pipeline, Trigger
from reactor.rules import decide
from reactor.store.base import Store, StoredEvent
from reactor.store.records import RunRecord

__all__ = [
    "NOT_CANDIDATE",
    "NOT_RECORDED",
    "PENDING",
    "PipelineReport",
    "dry_run",
    "explain_event",
    "explain_pipeline",
    "explain_stored",
    "not_candidate_reason",
]

#: Outcome codes of entries computed now rather than recorded with the event.
NOT_CANDIDATE = "not_candidate"
NOT_RECORDED = "not_recorded"
PENDING = "pending"

#: How many other events sharing an id are listed, events a pipeline report reads,
#: runs it reads, examples it keeps per outcome and event types it names.
OTHERS_SHOWN = 20
MAX_EVENTS = 100_000
MAX_RUNS = 10_000
EXAMPLES = 5
TYPES_SHOWN = 20
_PAGE = 1000


def not_candidate_reason(trigger: Trigger, event: Event) -> str | None:
    """Why ``trigger`` cannot match ``event`` by type or source; ``None`` if it can."""
    wanted = trigger.filter
    if not fnmatch.fnmatchcase(event.type, wanted.type):
        return f"type {event.type!r} does not match {wanted.type!r}"
    if wanted.source is not None and not fnmatch.fnmatchcase(event.source, wanted.source):
        return f"source {event.source!r} does not match {wanted.source!r}"
    return None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _computed(trigger: Trigger, outcome: str, reason: str) -> dict[str, Any]:
    return {
        "trigger": trigger.key,
        "pipeline": trigger.pipeline,
        "candidate": outcome != NOT_CANDIDATE,
        "recorded": False,
        "computed_now": True,
        "loaded": True,
        "fired": False,
        "outcome": outcome,
        "reason": reason,
    }


def explain_stored(
    stored: StoredEvent,
    pipelines: Mapping[str, Pipeline],
    others: Iterable[StoredEvent] = (),
) -> dict[str, Any]:
    """The explanation of one stored event against the pipelines loaded now.

    Triggers that were candidates show the decision recorded with the event; the
    others show why their type or source rules the event out, computed now from the
    current triggers (the pipeline may have changed since the event was evaluated).
    ``others`` are the events from other sources that share the event's id.
    """
    event = stored.event
    recorded = {d.get("trigger"): d for d in stored.outcome or [] if isinstance(d, dict)}
    evaluated = stored.outcome is not None
    entries: list[dict[str, Any]] = []
    for name in sorted(pipelines):
        for trigger in pipelines[name].triggers:
            decision = recorded.pop(trigger.key, None)
            if decision is not None:
                entries.append(_recorded(decision, loaded=True))
                continue
            reason = not_candidate_reason(trigger, event)
            if reason is not None:
                entries.append(_computed(trigger, NOT_CANDIDATE, reason))
            elif not evaluated:
                entries.append(_computed(trigger, PENDING, "the event is not evaluated yet"))
            else:
                entries.append(
                    _computed(
                        trigger,
                        NOT_RECORDED,
                        "matches now, but nothing was recorded for it: the trigger was"
                        " not loaded (or did not match) when the event was evaluated",
                    )
                )
    # Decisions of triggers that are gone (or renamed) since: still what happened.
    entries.extend(_recorded(d, loaded=False) for d in recorded.values())
    other_list = list(others)
    return {
        "event": event.to_cloudevent(),
        "seq": stored.seq,
        "received_at": _iso(stored.received_at),
        "evaluated_at": _iso(stored.evaluated_at),
        "evaluated": evaluated,
        "same_id": {
            "count": len(other_list),
            "events": [
                {"source": o.event.source, "type": o.event.type, "received_at": _iso(o.received_at)}
                for o in other_list[:OTHERS_SHOWN]
            ],
        },
        "fired": sum(1 for e in entries if e["fired"]),
        "run_ids": [e["run_id"] for e in entries if e.get("run_id")],
        "triggers": entries,
    }


def _recorded(decision: Mapping[str, Any], *, loaded: bool) -> dict[str, Any]:
    entry = {
        "trigger": decision.get("trigger"),
        "pipeline": decision.get("pipeline"),
        "candidate": True,
        "recorded": True,
        "computed_now": False,
        "loaded": loaded,
        "fired": bool(decision.get("fired")),
        # Records older than outcome codes only said fired or not, with a reason.
        "outcome": decision.get("outcome") or ("fired" if decision.get("fired") else "not_fired"),
        "reason": decision.get("reason", ""),
        "params": decision.get("params"),
    }
    for key in ("values", "run_id"):
        if decision.get(key) is not None:
            entry[key] = decision[key]
    # Codes added later (grouping: waiting, deduplicated, ...) may carry more: kept as is.
    entry.update({k: v for k, v in decision.items() if k not in entry})
    return entry


async def explain_event(
    store: Store,
    pipelines: Mapping[str, Pipeline],
    event_id: str,
    source: str | None = None,
) -> dict[str, Any] | None:
    """The explanation of the event ``event_id`` (from ``source``, else the first stored
    with that id); ``None`` if there is none."""
    if source is not None:
        stored = await store.get_event(source, event_id)
        if stored is None:
            return None
        same = await store.find_events(event_id, OTHERS_SHOWN + 2)
    else:
        same = await store.find_events(event_id, OTHERS_SHOWN + 1)
        if not same:
            return None
        stored = same[0]
    others = [s for s in same if s.event.source != stored.event.source]
    # Only the first few are read: more than that shows as "20+".
    return explain_stored(stored, pipelines, others[:OTHERS_SHOWN]) | (
        {"same_id_more": True} if len(others) > OTHERS_SHOWN else {}
    )


def dry_run(pipeline: Pipeline, event: Event, env: Mapping[str, str]) -> list[dict[str, Any]]:
    """What each trigger of ``pipeline`` would decide for ``event``; starts nothing."""
    entries: list[dict[str, Any]] = []
    for trigger in pipeline.triggers:
        reason = not_candidate_reason(trigger, event)
        if reason is not None:
            entry = _computed(trigger, NOT_CANDIDATE, reason)
        else:
            decision = decide(trigger, pipeline, event, env)
            entry = _recorded(decision.to_json(), loaded=True)
        entry.pop("recorded", None)
        entry.pop("computed_now", None)
        entry.pop("loaded", None)
        entries.append(entry)
    return entries


@dataclass
class _Outcome:
    count: int = 0
    last: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EXAMPLES))


@dataclass
class PipelineReport:
    """Why ``pipeline`` ran or not over a period: fed events and runs in received order."""

    pipeline: Pipeline
    since: datetime
    until: datetime
    events: int = 0
    reached: int = 0
    unevaluated: int = 0
    events_truncated: bool = False
    runs_truncated: bool = False
    outcomes: dict[str, _Outcome] = field(default_factory=dict)
    unmatched: Counter[str] = field(default_factory=Counter)
    run_statuses: Counter[str] = field(default_factory=Counter)
    runs: list[RunRecord] = field(default_factory=list)

    def add_event(self, stored: StoredEvent) -> None:
        self.events += 1
        if stored.outcome is None:
            self.unevaluated += 1
            return
        name = self.pipeline.name
        mine = [d for d in stored.outcome if isinstance(d, dict) and d.get("pipeline") == name]
        if not mine:
            self.unmatched[stored.event.type] += 1
            return
        self.reached += 1
        event = stored.event
        for decision in mine:
            code = str(decision.get("outcome") or ("fired" if decision.get("fired") else "other"))
            slot = self.outcomes.setdefault(code, _Outcome())
            slot.count += 1
            example = {
                "event_id": event.id,
                "source": event.source,
                "type": event.type,
                "received_at": _iso(stored.received_at),
                "trigger": decision.get("trigger"),
                "reason": decision.get("reason", ""),
            }
            if decision.get("run_id"):
                example["run_id"] = decision["run_id"]
            slot.last.append(example)

    def add_run(self, run: RunRecord) -> None:
        self.run_statuses[run.status] += 1
        self.runs.append(run)

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline.name,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "triggers": [
                {
                    "trigger": t.key,
                    "on": t.spec.on,
                    "type": t.filter.type,
                    "source": t.filter.source,
                    "when": t.when.source if t.when is not None else None,
                }
                for t in self.pipeline.triggers
            ],
            "events": {
                "total": self.events,
                "reached": self.reached,
                "unevaluated": self.unevaluated,
                "truncated": self.events_truncated,
            },
            "outcomes": {
                code: {"count": slot.count, "last": list(reversed(slot.last))}
                for code, slot in sorted(self.outcomes.items(), key=lambda kv: -kv[1].count)
            },
            "unmatched": {
                "count": sum(self.unmatched.values()),
                "by_type": dict(self.unmatched.most_common(TYPES_SHOWN)),
            },
            "runs": {
                "count": len(self.runs),
                "by_status": dict(self.run_statuses.most_common()),
                "last": [
                    {
                        "id": r.id,
                        "status": r.status,
                        "trigger": r.trigger,
                        "created_at": _iso(r.created_at),
                        "ended_at": _iso(r.ended_at),
                        "reason": r.reason,
                    }
                    for r in self.runs[:10]
                ],
                "truncated": self.runs_truncated,
            },
        }


async def explain_pipeline(
    store: Store, pipeline: Pipeline, since: datetime, until: datetime
) -> dict[str, Any]:
    """Why ``pipeline`` ran or did not between ``since`` and ``until``, from the store."""
    report = PipelineReport(pipeline, since, until)
    after: tuple[datetime, int] | None = None
    done = False
    while not done:
        page = await store.events_received(since, after=after, limit=_PAGE)
        done = len(page) < _PAGE
        for stored in page:
            if stored.received_at > until:
                done = True
                break
            if report.events >= MAX_EVENTS:
                report.events_truncated = done = True
                break
            report.add_event(stored)
        if page:
            after = (page[-1].received_at, page[-1].seq)
    before: int | None = None
    while True:
        runs = await store.list_runs(pipeline=pipeline.name, limit=_PAGE, before=before)
        for run in runs:
            if run.created_at < since:
                return report.to_json()
            if run.created_at > until:
                continue
            if len(report.runs) >= MAX_RUNS:
                report.runs_truncated = True
                return report.to_json()
            report.add_run(run)
        if len(runs) < _PAGE or runs[-1].seq is None:
            return report.to_json()
        before = runs[-1].seq
