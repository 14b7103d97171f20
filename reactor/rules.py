"""The rule engine: which triggers an event fires, with what params, and why not."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reactor.errors import ExpressionError, ParamError
from reactor.events import Event, content_id, logical_scope
from reactor.params import check_params
from reactor.pipelines import Pipeline, Trigger
from reactor.specs import EventFilter

__all__ = ["Decision", "Outcome", "RuleEngine", "decide", "event_scope", "run_key"]


#: What happened to an event at one trigger: ``fired`` (a run), or why not. The service
#: adds what admission, grouping and pauses decide (``skipped``, ``deduplicated``,
#: ``paused``, ...).
Outcome = Literal[
    "fired",
    "not_accepted",
    "condition_false",
    "condition_error",
    "params_invalid",
    "skipped",
    "not_started",
    "paused",
]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one trigger that could have matched an event."""

    trigger: str
    pipeline: str
    fired: bool
    reason: str
    params: dict[str, Any] | None = None
    outcome: str = "fired"
    #: The values a false or failing condition read (``{"event.data.amount": 42}``).
    values: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        record = {
            "trigger": self.trigger,
            "pipeline": self.pipeline,
            "fired": self.fired,
            "outcome": self.outcome,
            "reason": self.reason,
            "params": self.params,
        }
        if self.values is not None:
            record["values"] = self.values
        return record


def run_key(trigger_key: str, event: Event) -> str:
    """The same trigger and event always give the same run key: a redelivery starts nothing."""
    return f"{trigger_key}@{content_id(event.source, event.id)}"


class _Entry:
    """One loaded trigger, with its globs compiled once (``None`` where the text is exact)."""

    __slots__ = ("order", "pair", "source", "source_glob", "type_glob")

    def __init__(
        self, order: int, trigger: Trigger, pipeline: Pipeline, filter_: EventFilter
    ) -> None:
        self.order = order
        self.pair = (trigger, pipeline)
        kind, source = filter_.type, filter_.source
        self.type_glob = _compiled(kind) if EventFilter.is_glob(kind) else None
        self.source = source
        self.source_glob = _compiled(source) if source and EventFilter.is_glob(source) else None

    def source_matches(self, source: str) -> bool:
        if self.source_glob is not None:
            return self.source_glob(source) is not None
        return self.source is None or self.source == source


def _compiled(pattern: str) -> Callable[[str], re.Match[str] | None]:
    # What fnmatch.fnmatchcase does, without its cache lookup on every call.
    return re.compile(fnmatch.translate(pattern)).match


class _Bucket:
    """Triggers that share a type key, split by exact source (the rest: any or a glob)."""

    __slots__ = ("by_source", "rest")

    def __init__(self) -> None:
        self.by_source: dict[str, list[_Entry]] = {}
        self.rest: list[_Entry] = []

    def add(self, entry: _Entry) -> None:
        if entry.source is not None and entry.source_glob is None:
            self.by_source.setdefault(entry.source, []).append(entry)
        else:
            self.rest.append(entry)

    def collect(self, event: Event, found: list[_Entry]) -> None:
        """Append the entries whose source (and type glob, if any) match ``event``."""
        same = self.by_source.get(event.source)
        if same:
            found.extend(e for e in same if e.type_glob is None or e.type_glob(event.type))
        for e in self.rest:
            if (e.type_glob is None or e.type_glob(event.type)) and e.source_matches(event.source):
                found.append(e)


class RuleEngine:
    """Triggers indexed so that an event only meets the triggers that can match it.

    Exact types are a dict; type globs are filed under their literal prefix (the
    text before the first wildcard), looked up by the event type's prefixes of the
    lengths in use; within each, exact sources are a dict. So the cost of an event
    does not grow with the triggers whose type or source rule it out.
    """

    def __init__(self, pipelines: Iterable[Pipeline]) -> None:
        self._exact: dict[str, _Bucket] = {}
        self._globs: dict[str, _Bucket] = {}
        self._multi = False
        order = 0
        for pipeline in pipelines:
            for trigger in pipeline.triggers:
                # A correlation is filed under each of its patterns; an event matching
                # two of them still meets the trigger once (``candidates`` dedupes).
                filters = trigger.filters
                self._multi |= len(filters) > 1
                for filter_ in filters:
                    entry = _Entry(order, trigger, pipeline, filter_)
                    kind = filter_.type
                    if entry.type_glob is None:
                        self._exact.setdefault(kind, _Bucket()).add(entry)
                    else:
                        prefix = kind[: _literal_length(kind)]
                        self._globs.setdefault(prefix, _Bucket()).add(entry)
                order += 1
        self._prefix_lengths = tuple(sorted({len(p) for p in self._globs}))

    def candidates(self, event: Event) -> list[tuple[Trigger, Pipeline]]:
        """The triggers whose filter matches ``event``: exact types first, then globs,
        each in load order."""
        found: list[_Entry] = []
        bucket = self._exact.get(event.type)
        if bucket is not None:
            bucket.collect(event, found)
        exact = len(found)
        if exact > 1:
            # From two lists (by source, the rest): back in load order.
            found.sort(key=_order)
        kind = event.type
        for length in self._prefix_lengths:
            if length > len(kind):
                break
            bucket = self._globs.get(kind[:length])
            if bucket is not None:
                bucket.collect(event, found)
        if len(found) - exact > 1:
            found[exact:] = sorted(found[exact:], key=_order)
        if self._multi and len(found) > 1:
            unique: dict[int, _Entry] = {}
            for entry in found:
                unique.setdefault(entry.order, entry)
            found = list(unique.values())
        return [e.pair for e in found]

    def evaluate(self, event: Event, env: Mapping[str, str]) -> list[Decision]:
        """Decide for every trigger whose filter matches ``event``; pure, no I/O."""
        candidates = self.candidates(event)
        if not candidates:
            return []
        # What templates see of the event is built once, not once per trigger.
        scope = event_scope(event, env)
        return [decide(trigger, pipeline, event, env, scope) for trigger, pipeline in candidates]


def event_scope(event: Event, env: Mapping[str, str]) -> dict[str, Any]:
    """The template scope of a trigger's ``when:`` and ``params:`` for ``event``."""
    return {"event": event.scope(), "env": env, "logical": logical_scope(event, event.time)}


def _order(entry: _Entry) -> int:
    return entry.order


def _literal_length(pattern: str) -> int:
    """How many characters of ``pattern`` come before its first wildcard."""
    return next((i for i, c in enumerate(pattern) if c in "*?["), len(pattern))


def decide(
    trigger: Trigger,
    pipeline: Pipeline,
    event: Event,
    env: Mapping[str, str],
    scope: dict[str, Any] | None = None,
) -> Decision:
    """Whether ``trigger`` fires for ``event`` and with what params, or why not.

    ``scope`` is :func:`event_scope` of the event, when the caller has it already.
    """

    def no(outcome: str, reason: str, values: dict[str, Any] | None = None) -> Decision:
        return Decision(trigger.key, pipeline.name, False, reason, None, outcome, values)

    if not trigger.spec.accepts(event):
        return no("not_accepted", "event not accepted by the trigger")
    if scope is None:
        scope = event_scope(event, env)
    if trigger.when is not None:
        try:
            result = trigger.when.evaluate(scope)
        except ExpressionError as exc:
            return no("condition_error", f"when: {exc}", _shown(trigger.when.operands(scope)))
        if not result:
            values = _shown(trigger.when.operands(scope))
            read = ", ".join(f"{k} = {v!r}" for k, v in values.items() if k not in _ROOTS)
            return no(
                "condition_false",
                f"when: {trigger.when.source!r} is false" + (f" ({read})" if read else ""),
                values,
            )
    if trigger.grouping is not None and trigger.grouping.groups_events:
        # A run of a batch or a correlation gets its params from all its events, when
        # the group is complete (reactor/grouping.py).
        return Decision(trigger.key, pipeline.name, True, "matched", None)
    try:
        rendered = trigger.params.render(scope)
        params = check_params(pipeline.params, rendered)
    except (ExpressionError, ParamError) as exc:
        return no("params_invalid", f"params: {exc}")
    return Decision(trigger.key, pipeline.name, True, "matched", params)


#: Whole scopes are not worth showing as a condition's values.
_ROOTS = frozenset({"event", "env", "logical", "params", "tasks"})
_SHOWN_LIMIT = 200


def _shown(values: dict[str, Any]) -> dict[str, Any]:
    """Values as recorded with an outcome: no whole scopes (``env`` holds secrets), and
    long values cut short."""
    shown: dict[str, Any] = {}
    for key, value in values.items():
        if key in _ROOTS or key.startswith("env."):
            continue
        text = repr(value)
        shown[key] = value if len(text) <= _SHOWN_LIMIT else text[:_SHOWN_LIMIT] + "..."
    return shown
