"""The rule engine: which triggers an event fires, with what params, and why not."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reactor.errors import ExpressionError, ParamError
from reactor.events import Event, content_id, logical_scope
from reactor.params import check_params
from reactor.pipelines import Pipeline, Trigger
from reactor.specs import EventFilter

__all__ = ["Decision", "Outcome", "RuleEngine", "run_key"]


#: What happened to an event at one trigger: ``fired`` (a run), or why not. The service
#: adds what admission and grouping decide (``skipped``, ``deduplicated``, ...).
Outcome = Literal[
    "fired",
    "not_accepted",
    "condition_false",
    "condition_error",
    "params_invalid",
    "skipped",
    "not_started",
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


class RuleEngine:
    """Triggers indexed by exact event type (globs in a short side list)."""

    def __init__(self, pipelines: Iterable[Pipeline]) -> None:
        self._exact: dict[str, list[tuple[Trigger, Pipeline]]] = defaultdict(list)
        self._globs: list[tuple[Trigger, Pipeline]] = []
        for pipeline in pipelines:
            for trigger in pipeline.triggers:
                if EventFilter.is_glob(trigger.filter.type):
                    self._globs.append((trigger, pipeline))
                else:
                    self._exact[trigger.filter.type].append((trigger, pipeline))

    def candidates(self, event: Event) -> list[tuple[Trigger, Pipeline]]:
        found = [tp for tp in self._exact.get(event.type, ()) if tp[0].filter.matches(event)]
        found.extend(tp for tp in self._globs if tp[0].filter.matches(event))
        return found

    def evaluate(self, event: Event, env: Mapping[str, str]) -> list[Decision]:
        """Decide for every trigger whose filter matches ``event``; pure, no I/O."""
        return [
            decide(trigger, pipeline, event, env) for trigger, pipeline in self.candidates(event)
        ]


def decide(trigger: Trigger, pipeline: Pipeline, event: Event, env: Mapping[str, str]) -> Decision:
    def no(outcome: str, reason: str, values: dict[str, Any] | None = None) -> Decision:
        return Decision(trigger.key, pipeline.name, False, reason, None, outcome, values)

    if not trigger.spec.accepts(event):
        return no("not_accepted", "event not accepted by the trigger")
    scope = {"event": event.scope(), "env": env, "logical": logical_scope(event, event.time)}
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
