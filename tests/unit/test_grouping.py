"""Trigger windows decided in memory (reactor/grouping.py): pure, with explicit times."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.errors import SpecErrorGroup
from reactor.events import Event
from reactor.grouping import Windows
from reactor.pipelines import Pipeline, Trigger, load_pipeline

T0 = datetime(2026, 3, 1, tzinfo=UTC)

BATCH = """
name: p
params:
  n: {type: integer}
triggers:
  - on: event
    type: r
    batch: {max: MAX, window: 30s}
    params: {n: "{{ events | length }}"}
tasks:
  - {id: a, shell: "true"}
"""

RATE = """
name: p
triggers:
  - on: event
    type: r
    rate: {max: 3, per: 10s}
tasks:
  - {id: a, shell: "true"}
"""


def compiled(tmp_path: Path, text: str) -> tuple[Trigger, Pipeline]:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    pipeline = load_pipeline(path)
    return pipeline.triggers[0], pipeline


def event(n: int) -> Event:
    return Event("r", "s", {"n": n}, id=f"e{n}")


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 8), count=st.integers(0, 40))
def test_a_batch_never_exceeds_max_and_every_event_has_one_outcome(
    tmp_path_factory: pytest.TempPathFactory, size: int, count: int
) -> None:
    trigger, pipeline = compiled(tmp_path_factory.mktemp("b"), BATCH.replace("MAX", str(size)))
    windows = Windows()
    fired: list[list[str]] = []
    for n in range(count):
        step = windows.offer(trigger, pipeline, event(n), None, {}, T0)
        assert step.outcome in ("waiting", "fired")
        for fire in step.fires:
            assert len(fire.events) <= size
            fired.append([e.id for e in fire.events])
    step = (
        windows.expire(trigger.key, "batch", trigger, pipeline, {}, T0 + timedelta(seconds=30))
        if windows.get(trigger.key, "batch")
        else None
    )
    if step is not None:
        fired.extend([e.id for e in fire.events] for fire in step.fires)
    # Every event is in exactly one run, in order.
    assert [i for group in fired for i in group] == [f"e{n}" for n in range(count)]
    assert all(len(group) == size for group in fired[: count // size])


def test_held_runs_are_released_in_order_as_the_period_allows(tmp_path: Path) -> None:
    trigger, pipeline = compiled(tmp_path, RATE)
    windows = Windows()
    outcomes = [
        windows.offer(trigger, pipeline, event(n), {}, {}, T0 + timedelta(seconds=n)).outcome
        for n in range(5)
    ]
    assert outcomes == ["fired", "fired", "fired", "rate_limited", "rate_limited"]
    window = windows.get(trigger.key, "rate")
    assert window is not None and window.deadline == T0 + timedelta(seconds=10)
    step = windows.expire(trigger.key, "rate", trigger, pipeline, {}, T0 + timedelta(seconds=10))
    assert [f.events[0].id for f in step.fires] == ["e3"]
    step = windows.expire(trigger.key, "rate", trigger, pipeline, {}, T0 + timedelta(seconds=11))
    assert [f.events[0].id for f in step.fires] == ["e4"]
    assert windows.next_deadline() is None


def test_a_saved_window_is_taken_over_with_its_events(tmp_path: Path) -> None:
    trigger, pipeline = compiled(tmp_path, BATCH.replace("MAX", "3"))
    first = Windows()
    rows = []
    for n in range(2):
        rows += first.offer(trigger, pipeline, event(n), None, {}, T0).rows
    later = Windows()
    refs = later.refs(rows[-1:])
    assert refs == [("s", "e0"), ("s", "e1")]
    assert later.load(rows[-1:], {("s", "e0"): event(0)}) == [("s", "e1")]
    assert later.next_deadline() == T0 + timedelta(seconds=30)
    # Versions only grow, across processes too: the saved row is replaced, not kept.
    step = later.offer(trigger, pipeline, event(2), None, {}, T0)
    assert step.rows[-1].version > rows[-1].version
    # The event that is gone is left out of the run; the others are in it.
    [fire] = step.fires
    assert [e.id for e in fire.events] == ["e0", "e2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "batch: {max: 0, window: 1s}",
            "triggers[0].batch.max: Input should be greater than or equal to 1",
        ),
        ("debounce: {quiet: 10s, max_wait: 5s}", "max_wait must be at least as long as quiet"),
        ("dedupe: {key: '{{ event.data.x ', for: 1h}", "dedupe.key"),
        ("rate: {max: 1, per: 1m, over_limit: later}", "triggers[0].rate.over_limit"),
    ],
)
def test_bad_grouping_is_a_validation_error_with_its_line(
    tmp_path: Path, body: str, message: str
) -> None:
    text = (
        f"name: p\ntriggers:\n  - on: event\n    type: r\n    {body}\n"
        "tasks:\n  - {id: a, shell: 'true'}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path)
    assert any(
        message in str(p) and str(p).startswith(f"{path}:") for p in caught.value.problems
    ), caught.value.problems


def test_a_correlation_needs_key_and_within(tmp_path: Path) -> None:
    text = (
        "name: p\ntriggers:\n  - on: event\n    all_of:\n      - {type: a}\n      - {type: b}\n"
        "tasks:\n  - {id: a, shell: 'true'}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path)
    [problem] = caught.value.problems
    assert problem.line == 3
    assert "all_of: needs key:" in problem.message
