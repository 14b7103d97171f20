"""The rule engine's index finds exactly the triggers a scan of every trigger finds, in order."""

from __future__ import annotations

import textwrap
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.events import Event
from reactor.pipelines import Pipeline, load_pipeline
from reactor.rules import RuleEngine
from reactor.specs import EventFilter

TEMPLATE = """
name: p
triggers:
  - {on: event, type: x}
tasks:
  - {id: a, shell: echo}
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    path = tmp_path_factory.mktemp("index") / "p.yaml"
    path.write_text(textwrap.dedent(TEMPLATE).lstrip(), encoding="utf-8")
    return load_pipeline(path)


def pipelines_with(template: Pipeline, filters: list[list[EventFilter]]) -> list[Pipeline]:
    """One pipeline per inner list, each trigger with the given filter (what the index reads)."""
    base = template.triggers[0]
    made = []
    for p, group in enumerate(filters):
        name = f"p{p}"
        triggers = tuple(
            replace(base, key=f"{name}/t{i}", id=f"t{i}", pipeline=name, filter=f)
            for i, f in enumerate(group)
        )
        made.append(replace(template, name=name, triggers=triggers))
    return made


def brute_force(pipelines: list[Pipeline], event: Event) -> list[str]:
    """Every trigger checked in turn: exact types first, then globs, each in load order."""
    every = [t for p in pipelines for t in p.triggers if t.filter.matches(event)]
    exact = [t.key for t in every if not EventFilter.is_glob(t.filter.type)]
    globs = [t.key for t in every if EventFilter.is_glob(t.filter.type)]
    return exact + globs


def keys(engine: RuleEngine, event: Event) -> list[str]:
    return [t.key for t, _ in engine.candidates(event)]


# Few letters, so types, globs and sources collide often.
segment = st.sampled_from(["a", "b", "ab", "ba", "a[b"])
event_type = st.lists(segment, min_size=1, max_size=3).map(".".join)
source = st.sampled_from(["s1", "s2", "shop/eu", "shop/us", "x"])


@st.composite
def type_patterns(draw: st.DrawFn) -> str:
    parts = draw(st.lists(segment, min_size=1, max_size=3))
    for i in range(len(parts)):
        parts[i] = draw(st.sampled_from([parts[i], "*", "?", "a*", "[ab]", "[!a]*", parts[i]]))
    text = ".".join(parts)
    return draw(st.sampled_from([text, text, text + "*", "*", "*." + text, text[:1] + "*"]))


source_patterns = st.one_of(
    st.none(), source, st.sampled_from(["s*", "shop/*", "?1", "*", "[sx]*"])
)
filters = st.builds(EventFilter, type_patterns(), source_patterns)


@settings(deadline=None)
@given(
    groups=st.lists(st.lists(filters, max_size=8), min_size=1, max_size=4),
    events=st.lists(st.tuples(event_type, source), min_size=1, max_size=10),
)
def test_candidates_equal_a_scan_of_every_trigger(
    template: Pipeline,
    groups: list[list[EventFilter]],
    events: list[tuple[str, str]],
) -> None:
    pipelines = pipelines_with(template, groups)
    engine = RuleEngine(pipelines)
    for kind, src in events:
        event = Event(kind, src)
        assert keys(engine, event) == brute_force(pipelines, event)


@settings(max_examples=50, deadline=None)
@given(groups=st.lists(st.lists(filters, max_size=8), min_size=1, max_size=4), kind=event_type)
def test_an_event_matching_a_trigger_by_construction_finds_it(
    template: Pipeline, groups: list[list[EventFilter]], kind: str
) -> None:
    groups = [*groups, [EventFilter(kind, "s1")]]
    pipelines = pipelines_with(template, groups)
    found = keys(RuleEngine(pipelines), Event(kind, "s1"))
    assert f"p{len(groups) - 1}/t0" in found
    assert found == brute_force(pipelines, Event(kind, "s1"))


def test_order_is_exact_then_globs_each_in_load_order(template: Pipeline) -> None:
    pipelines = pipelines_with(
        template,
        [
            [EventFilter("orders.*"), EventFilter("orders.paid", "shop/eu")],
            [EventFilter("*"), EventFilter("orders.paid"), EventFilter("orders.p*", "shop/*")],
            [EventFilter("orders.paid", "shop/us"), EventFilter("o*", "shop/eu")],
        ],
    )
    engine = RuleEngine(pipelines)
    assert keys(engine, Event("orders.paid", "shop/eu")) == [
        "p0/t1",
        "p1/t1",
        "p0/t0",
        "p1/t0",
        "p1/t2",
        "p2/t1",
    ]
    assert keys(engine, Event("orders.paid", "shop/us")) == [
        "p1/t1",
        "p2/t0",
        "p0/t0",
        "p1/t0",
        "p1/t2",
    ]
    assert keys(engine, Event("billing.paid", "shop/eu")) == ["p1/t0"]


def test_triggers_that_cannot_match_are_not_looked_at(template: Pipeline) -> None:
    """1,000 triggers for other types and sources: an event meets only its own bucket."""
    many = [EventFilter(f"orders.t{i}") for i in range(300)]
    many += [EventFilter(f"sensor.g{i}.*") for i in range(300)]
    many += [EventFilter("file.arrived", f"sensors/s{i}") for i in range(400)]
    engine = RuleEngine(pipelines_with(template, [many]))
    looked_at: list[str] = []
    # Count the globs tried, through their compiled matchers.
    for bucket in engine._globs.values():
        for entry in bucket.rest:
            match = entry.type_glob
            assert match is not None

            def counting(text: str, match=match, key=entry.pair[0].key):  # type: ignore[no-untyped-def]
                looked_at.append(key)
                return match(text)

            entry.type_glob = counting
    assert keys(engine, Event("sensor.g7.temp", "x")) == ["p0/t307"]
    # Only the globs filed under the event type's own prefixes ("sensor.g7.") were tried.
    assert looked_at == ["p0/t307"]
    assert keys(engine, Event("file.arrived", "sensors/s12")) == ["p0/t612"]
    assert keys(engine, Event("other.type", "x")) == []
    assert looked_at == ["p0/t307"]
