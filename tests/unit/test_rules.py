"""The rule engine: which triggers an event fires, with what params, and why not."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from reactor.actions import TaskRequest
from reactor.events import Event
from reactor.pipelines import Pipeline, load_pipeline
from reactor.registry import Registry, TaskKind, TriggerKind
from reactor.rules import Decision, RuleEngine, run_key
from reactor.specs import EventFilter, EventTriggerSpec, TaskSpec, TriggerSpec

ORDERS = """
name: orders
params:
  path: {type: string}
  amount: {type: integer, default: 0}
  region: {type: string, default: eu, enum: [eu, us]}
triggers:
  - on: event
    id: paid
    type: orders.paid
    when: "event.data.amount > 100"
    params:
      path: "{{ event.data.path }}"
      amount: "{{ event.data.amount }}"
  - on: event
    id: any_order
    type: "orders.*"
    source: "shop/*"
    params:
      path: "/in/{{ event.data.path }}"
      region: "{{ event.data.region | default('eu') }}"
tasks:
  - {id: a, shell: echo}
"""

AUDIT = """
name: audit
triggers:
  - on: event
    type: "*"
  - on: event
    type: orders.paid
    when: "env.STAGE == 'prod'"
tasks:
  - {id: a, shell: echo}
"""


def pipeline(tmp_path: Path, text: str, registry: Registry | None = None) -> Pipeline:
    path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_pipeline(path, registry=registry)


@pytest.fixture
def engine(tmp_path: Path) -> RuleEngine:
    return RuleEngine([pipeline(tmp_path, ORDERS)])


def paid(data: dict[str, Any], source: str = "shop/eu", **kw: Any) -> Event:
    return Event("orders.paid", source, data, **kw)


def by_trigger(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.trigger: d for d in decisions}


# --- matching by type and source -----------------------------------------------------------------


def test_exact_and_glob_types_both_match(engine: RuleEngine) -> None:
    decisions = engine.evaluate(paid({"amount": 250, "path": "a.csv"}), {})
    assert decisions == [
        Decision(
            "orders/paid",
            "orders",
            True,
            "matched",
            {"path": "a.csv", "amount": 250, "region": "eu"},
        ),
        Decision(
            "orders/any_order",
            "orders",
            True,
            "matched",
            {"path": "/in/a.csv", "amount": 0, "region": "eu"},
        ),
    ]


def test_a_glob_type_matches_other_types_of_its_family(engine: RuleEngine) -> None:
    event = Event("orders.shipped", "shop/us", {"path": "b.csv", "region": "us"})
    decisions = engine.evaluate(event, {})
    assert [d.trigger for d in decisions] == ["orders/any_order"]
    assert decisions[0].params == {"path": "/in/b.csv", "amount": 0, "region": "us"}


def test_a_source_glob_filters_events(engine: RuleEngine) -> None:
    event = paid({"amount": 250, "path": "a.csv"}, source="warehouse")
    assert [d.trigger for d in engine.evaluate(event, {})] == ["orders/paid"]


def test_an_event_no_trigger_wants_gives_no_decisions(engine: RuleEngine) -> None:
    assert engine.evaluate(Event("invoices.paid", "shop/eu", {}), {}) == []
    assert engine.evaluate(Event("orders", "shop/eu", {}), {}) == []


def test_candidates_across_pipelines(tmp_path: Path) -> None:
    engine = RuleEngine([pipeline(tmp_path, ORDERS), pipeline(tmp_path, AUDIT)])
    event = paid({"amount": 1, "path": "a.csv"}, source="other")
    keys = [trigger.key for trigger, _ in engine.candidates(event)]
    assert sorted(keys) == ["audit/event_1", "audit/event_2", "orders/paid"]
    assert [t.key for t, _ in engine.candidates(Event("x.y", "z"))] == ["audit/event_1"]


def test_event_filter_matching() -> None:
    event = Event("orders.paid", "shop/eu")
    assert EventFilter("orders.paid").matches(event)
    assert EventFilter("orders.*").matches(event)
    assert EventFilter("orders.?aid", "shop/*").matches(event)
    assert not EventFilter("Orders.paid").matches(event)
    assert not EventFilter("orders.*", "shop/us").matches(event)
    assert EventFilter.is_glob("a.*") and EventFilter.is_glob("a.[bc]")
    assert not EventFilter.is_glob("a.b")


# --- when ----------------------------------------------------------------------------------------


def test_when_false_records_the_condition(engine: RuleEngine) -> None:
    decision = by_trigger(engine.evaluate(paid({"amount": 50, "path": "a"}), {}))["orders/paid"]
    assert decision == Decision(
        "orders/paid",
        "orders",
        False,
        "when: 'event.data.amount > 100' is false (event.data.amount = 50)",
        outcome="condition_false",
        values={"event.data.amount": 50},
    )


def test_a_false_condition_shows_each_value_it_read_but_never_the_environment(
    tmp_path: Path,
) -> None:
    engine = RuleEngine([pipeline(tmp_path, AUDIT)])
    decision = by_trigger(engine.evaluate(paid({}), {"STAGE": "dev"}))["audit/event_2"]
    assert decision.outcome == "condition_false"
    assert decision.values == {}


def test_when_error_records_the_reason(engine: RuleEngine) -> None:
    decisions = by_trigger(engine.evaluate(paid({"path": "a"}), {}))
    assert decisions["orders/paid"].fired is False
    assert decisions["orders/paid"].outcome == "condition_error"
    assert decisions["orders/paid"].reason == (
        "when: 'dict object' has no attribute 'amount' (in 'event.data.amount > 100')"
    )
    assert decisions["orders/paid"].values == {"event.data.amount": "<undefined>"}
    # The other trigger is decided on its own.
    assert decisions["orders/any_order"].fired is True


def test_when_type_error_records_the_reason(engine: RuleEngine) -> None:
    decision = by_trigger(engine.evaluate(paid({"amount": "lots", "path": "a"}), {}))
    assert decision["orders/paid"].reason == (
        "when: '>' not supported between instances of 'str' and 'int'"
        " (in 'event.data.amount > 100')"
    )


def test_when_sees_the_environment(tmp_path: Path) -> None:
    engine = RuleEngine([pipeline(tmp_path, AUDIT)])
    event = paid({})
    assert by_trigger(engine.evaluate(event, {"STAGE": "prod"}))["audit/event_2"].fired
    decision = by_trigger(engine.evaluate(event, {"STAGE": "dev"}))["audit/event_2"]
    assert decision.reason == "when: \"env.STAGE == 'prod'\" is false"
    decision = by_trigger(engine.evaluate(event, {}))["audit/event_2"]
    assert decision.reason == (
        "when: 'dict object' has no attribute 'STAGE' (in \"env.STAGE == 'prod'\")"
    )


# --- params --------------------------------------------------------------------------------------


def test_params_that_fail_their_type_are_a_recorded_reason(engine: RuleEngine) -> None:
    event = paid({"amount": 250.5, "path": "a"})
    decision = by_trigger(engine.evaluate(event, {}))["orders/paid"]
    assert decision == Decision(
        "orders/paid",
        "orders",
        False,
        "params: param 'amount': expected integer, got 250.5: Input should be a valid integer,"
        " got a number with a fractional part",
        outcome="params_invalid",
    )


def test_a_native_value_of_the_wrong_type_is_a_recorded_reason(engine: RuleEngine) -> None:
    decision = by_trigger(engine.evaluate(paid({"amount": 250, "path": 7}), {}))["orders/paid"]
    assert decision.reason == "params: param 'path': expected a string, got int 7"


def test_an_enum_violation_is_a_recorded_reason(engine: RuleEngine) -> None:
    event = Event("orders.shipped", "shop/eu", {"path": "a", "region": "fr"})
    (decision,) = engine.evaluate(event, {})
    assert decision.reason == "params: param 'region': 'fr' is not one of 'eu', 'us'"


def test_a_param_template_that_cannot_render_is_a_recorded_reason(engine: RuleEngine) -> None:
    decision = by_trigger(engine.evaluate(paid({"amount": 250}), {}))["orders/paid"]
    assert decision.reason == (
        "params: 'dict object' has no attribute 'path' (in 'event.data.path')"
    )
    assert decision.params is None


def test_decision_to_json() -> None:
    decision = Decision("p/t", "p", True, "matched", {"a": 1})
    assert decision.to_json() == {
        "trigger": "p/t",
        "pipeline": "p",
        "fired": True,
        "outcome": "fired",
        "reason": "matched",
        "params": {"a": 1},
    }


# --- a trigger kind with a finer check than its filter -------------------------------------------


class PickyTriggerSpec(TriggerSpec):
    """Matches ``picky.*`` events whose subject is ``yes``."""

    on: Literal["picky"]

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter("picky.*")

    def accepts(self, event: Event) -> bool:
        return event.subject == "yes"


class NoopSpec(TaskSpec):
    type_key: ClassVar[str] = "noop"
    noop: bool = True


class NoopAction:
    def __init__(self, spec: NoopSpec, base_dir: Path) -> None:
        self.spec = spec

    async def execute(self, request: TaskRequest) -> Any:
        return None


def test_a_trigger_that_does_not_accept_the_event_says_so(tmp_path: Path) -> None:
    registry = Registry()
    registry.add_trigger(TriggerKind("event", EventTriggerSpec))
    registry.add_trigger(TriggerKind("picky", PickyTriggerSpec))
    registry.add_task(TaskKind("noop", NoopSpec, NoopAction))
    text = """
    name: p
    triggers:
      - on: picky
    tasks:
      - {id: a, noop: true}
    """
    engine = RuleEngine([pipeline(tmp_path, text, registry)])
    (decision,) = engine.evaluate(Event("picky.thing", "s", subject="no"), {})
    assert decision == Decision(
        "p/picky", "p", False, "event not accepted by the trigger", outcome="not_accepted"
    )
    (decision,) = engine.evaluate(Event("picky.thing", "s", subject="yes"), {})
    assert decision.fired is True


def test_a_kind_cannot_be_registered_twice() -> None:
    registry = Registry()
    registry.add_trigger(TriggerKind("event", EventTriggerSpec))
    with pytest.raises(ValueError) as caught:
        registry.add_trigger(TriggerKind("event", EventTriggerSpec))
    assert str(caught.value) == "trigger kind 'event' is registered twice"
    registry.add_task(TaskKind("noop", NoopSpec, NoopAction))
    with pytest.raises(ValueError) as caught:
        registry.add_task(TaskKind("noop", NoopSpec, NoopAction))
    assert str(caught.value) == "task type 'noop' is registered twice"


# --- run keys ------------------------------------------------------------------------------------


def test_run_key_is_stable_for_the_same_trigger_and_event() -> None:
    event = Event("orders.paid", "shop", {"a": 1}, id="e1")
    redelivered = Event("orders.paid", "shop", {"a": 1}, id="e1")
    assert run_key("orders/paid", event) == run_key("orders/paid", redelivered)
    assert run_key("orders/paid", event).startswith("orders/paid@")


def test_run_key_differs_for_different_events_and_triggers() -> None:
    event = Event("orders.paid", "shop", id="e1")
    keys = {
        run_key("orders/paid", event),
        run_key("orders/paid", Event("orders.paid", "shop", id="e2")),
        run_key("orders/paid", Event("orders.paid", "other-shop", id="e1")),
        run_key("orders/any_order", event),
        run_key("audit/paid", event),
    }
    assert len(keys) == 5


def test_run_key_ignores_what_is_not_identity() -> None:
    # A redelivery may carry a new timestamp; it is still the same event.
    first = Event("orders.paid", "shop", {"a": 1}, id="e1")
    again = Event("orders.paid", "shop", {"a": 1}, id="e1", subject="x")
    assert run_key("p/t", first) == run_key("p/t", again)
