"""The rule engine: which triggers an event fires, with what params, and why not."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reactor.errors import ExpressionError, ParamError
from reactor.events import Event, content_id, logical_scope
from reactor.params import check_params
from reactor.pipelines import Pipeline, Trigger
from reactor.specs import EventFilter

__all__ = ["Decision", "RuleEngine", "run_key"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one trigger that could have matched an event."""

    trigger: str
    pipeline: str
    fired: bool
    reason: str
    params: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "pipeline": self.pipeline,
            "fired": self.fired,
            "reason": self.reason,
            "params": self.params,
        }


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
    def no(reason: str) -> Decision:
        return Decision(trigger.key, pipeline.name, False, reason)

    if not trigger.spec.accepts(event):
        return no("event not accepted by the trigger")
    scope = {"event": event.scope(), "env": env, "logical": logical_scope(event, event.time)}
    if trigger.when is not None:
        try:
            result = trigger.when.evaluate(scope)
        except ExpressionError as exc:
            return no(f"when: {exc}")
        if not result:
            return no(f"when: {trigger.when.source!r} is false")
    try:
        rendered = trigger.params.render(scope)
        params = check_params(pipeline.params, rendered)
    except (ExpressionError, ParamError) as exc:
        return no(f"params: {exc}")
    return Decision(trigger.key, pipeline.name, True, "matched", params)
