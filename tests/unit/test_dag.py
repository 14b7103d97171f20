"""Pure DAG logic: cycles, ordering, and which tasks are ready or blocked."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.dag import FINAL_TASK_STATES, find_cycle, next_steps, topological_order

Needs = dict[str, list[str]]
BAD_STATES = sorted(FINAL_TASK_STATES - {"succeeded", "skipped"})


# --- find_cycle ----------------------------------------------------------------------------------


def test_no_cycle_in_a_dag() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None
    assert find_cycle({}) is None


def test_a_cycle_is_returned_as_a_path_back_to_its_start() -> None:
    assert find_cycle({"a": ["c"], "b": ["a"], "c": ["b"]}) == ["a", "c", "b", "a"]


def test_a_self_loop_is_a_cycle() -> None:
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_a_cycle_below_an_acyclic_prefix_leaves_the_prefix_out() -> None:
    assert find_cycle({"start": ["x"], "x": ["y"], "y": ["x"]}) == ["x", "y", "x"]


def test_unknown_needs_are_ignored_by_find_cycle() -> None:
    assert find_cycle({"a": ["ghost"]}) is None


# --- topological_order ---------------------------------------------------------------------------


def test_order_puts_needs_first_and_keeps_file_order_among_peers() -> None:
    needs = {"load": ["extract"], "extract": [], "report": ["load"], "audit": []}
    assert topological_order(needs) == ["extract", "audit", "load", "report"]


def test_order_of_independent_tasks_is_file_order() -> None:
    assert topological_order({"c": [], "a": [], "b": []}) == ["c", "a", "b"]


def test_order_of_a_cycle_is_an_error() -> None:
    with pytest.raises(ValueError) as caught:
        topological_order({"a": ["b"], "b": ["a"]})
    assert str(caught.value) == "the graph has a cycle"


# --- next_steps ----------------------------------------------------------------------------------

DIAMOND: Needs = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_at_the_start_only_roots_are_ready() -> None:
    assert next_steps(DIAMOND, {}) == (["a"], [])


def test_a_task_is_ready_when_all_its_needs_succeeded() -> None:
    assert next_steps(DIAMOND, {"a": "succeeded"}) == (["b", "c"], [])
    assert next_steps(DIAMOND, {"a": "succeeded", "b": "succeeded", "c": "running"}) == ([], [])
    states = {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert next_steps(DIAMOND, states) == (["d"], [])


def test_a_skipped_need_counts_as_done() -> None:
    states = {"a": "succeeded", "b": "skipped", "c": "succeeded"}
    assert next_steps(DIAMOND, states) == (["d"], [])


def test_running_and_finished_tasks_are_never_returned() -> None:
    states = {"a": "running"}
    assert next_steps(DIAMOND, states) == ([], [])
    states = {task: "succeeded" for task in DIAMOND}
    assert next_steps(DIAMOND, states) == ([], [])


@pytest.mark.parametrize("bad", BAD_STATES)
def test_a_need_that_ended_badly_blocks_its_dependents(bad: str) -> None:
    assert next_steps(DIAMOND, {"a": bad}) == ([], ["b", "c"])


def test_a_bad_need_blocks_even_while_another_need_still_runs() -> None:
    states = {"a": "succeeded", "b": "failed", "c": "running"}
    assert next_steps(DIAMOND, states) == ([], ["d"])


def test_upstream_failed_propagates_down_a_chain() -> None:
    chain: Needs = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}
    states = {"a": "failed"}
    blocked_in_turn = []
    while True:
        ready, blocked = next_steps(chain, states)
        assert ready == []
        if not blocked:
            break
        blocked_in_turn.append(blocked)
        states.update(dict.fromkeys(blocked, "upstream_failed"))
    assert blocked_in_turn == [["b"], ["c"], ["d"]]


def test_a_failure_leaves_independent_branches_runnable() -> None:
    needs: Needs = {"a": [], "b": ["a"], "x": [], "y": ["x"]}
    assert next_steps(needs, {"a": "failed", "x": "succeeded"}) == (["y"], ["b"])


# --- properties over random DAGs -----------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> Needs:
    """A random DAG: a task may only need tasks numbered before it; listed in any order."""
    count = draw(st.integers(min_value=0, max_value=10))
    names = [f"t{i}" for i in range(count)]
    needs: Needs = {name: [] for name in names}
    if count > 1:
        index = st.integers(min_value=0, max_value=count - 1)
        pairs = draw(st.lists(st.tuples(index, index), min_size=count, max_size=3 * count))
        for a, b in sorted({(min(p), max(p)) for p in pairs if p[0] != p[1]}):
            needs[names[b]].append(names[a])
    order = draw(st.permutations(names))
    return {name: needs[name] for name in order}


def edges(needs: Needs) -> list[tuple[str, str]]:
    return [(dep, task) for task, deps in needs.items() for dep in deps]


@given(dags())
def test_topological_order_respects_every_edge(needs: Needs) -> None:
    order = topological_order(needs)
    assert sorted(order) == sorted(needs)
    position = {task: i for i, task in enumerate(order)}
    for dep, task in edges(needs):
        assert position[dep] < position[task]


@given(dags())
def test_a_dag_has_no_cycle(needs: Needs) -> None:
    assert find_cycle(needs) is None


@given(dags(), st.data())
def test_a_back_edge_makes_a_cycle_that_find_cycle_reports(
    needs: Needs, data: st.DataObject
) -> None:
    pairs = edges(needs)
    if not pairs:
        return
    dep, task = data.draw(st.sampled_from(pairs))
    cyclic = {name: list(deps) for name, deps in needs.items()}
    cyclic[dep].append(task)  # dep now needs task, which already needs dep
    cycle = find_cycle(cyclic)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    for node, need in itertools.pairwise(cycle):
        assert need in cyclic[node]
    with pytest.raises(ValueError) as caught:
        topological_order(cyclic)
    assert str(caught.value) == "the graph has a cycle"


@given(dags(), st.data())
def test_next_steps_never_returns_a_task_whose_needs_are_not_done(
    needs: Needs, data: st.DataObject
) -> None:
    every_state = ["pending", "running", *sorted(FINAL_TASK_STATES)]
    drawn = data.draw(
        st.lists(st.sampled_from(every_state), min_size=len(needs), max_size=len(needs))
    )
    states = dict(zip(needs, drawn, strict=True))
    ready, blocked = next_steps(needs, states)
    assert not set(ready) & set(blocked)
    for task in ready:
        assert states[task] == "pending"
        assert all(states[dep] in ("succeeded", "skipped") for dep in needs[task])
    for task in blocked:
        assert states[task] == "pending"
        assert any(states[dep] in BAD_STATES for dep in needs[task])


@given(dags(), st.data())
def test_running_a_dag_to_the_end_finishes_every_task_after_its_needs(
    needs: Needs, data: st.DataObject
) -> None:
    """Simulate the executor: run ready tasks (each may fail), mark blocked ones."""
    size = len(needs)
    outcomes = iter(
        data.draw(
            st.lists(
                st.sampled_from(["succeeded", "failed", "skipped"]), min_size=size, max_size=size
            )
        )
    )
    states: dict[str, str] = {}
    finished: list[str] = []
    while True:
        ready, blocked = next_steps(needs, states)
        if not ready and not blocked:
            break
        for task in blocked:
            states[task] = "upstream_failed"
        for task in ready:
            for dep in needs[task]:
                assert states[dep] in ("succeeded", "skipped")
            states[task] = next(outcomes)
            finished.append(task)
    assert set(states) == set(needs)
    assert all(state in FINAL_TASK_STATES for state in states.values())
    for task, state in states.items():
        bad_need = any(states[dep] not in ("succeeded", "skipped") for dep in needs[task])
        assert (state == "upstream_failed") == bad_need
