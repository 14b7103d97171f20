"""Pure DAG logic: cycles, ordering, edges, run_if verdicts, and walking a run's graph."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor.dag import (
    FINAL_TASK_STATES,
    RUN_IF_RULES,
    Edge,
    Need,
    Steps,
    TaskState,
    Verdict,
    Walk,
    combined_status,
    edge,
    find_cycle,
    run_status,
    topological_order,
    verdict,
)
from reactor.specs import RunIf

Needs = dict[str, list[str]]
Graph = dict[str, list[Need]]

# --- the documented rules, restated here so the tests do not check dag.py against itself ----------

EVERY_STATE: list[str] = list(get_args(TaskState))
NOT_FINAL = ["pending", "running"]
FAILURES = ["failed", "timed_out", "upstream_failed", "cancelled"]
FINAL = ["succeeded", "skipped", *FAILURES]
EDGES: list[Edge] = ["success", "skipped", "failed"]


def documented_edge(need: Need, status: str, output: Any) -> Edge | None:
    """A need is undecided until its task is final; a succeeded ``if:`` task that chose the
    other branch (or chose nothing boolean) skips a need with an ``outcome``."""
    if status in NOT_FINAL:
        return None
    if status == "succeeded":
        if need.outcome is None:
            return "success"
        chose = output if isinstance(output, bool) else None
        return "success" if chose == need.outcome else "skipped"
    if status == "skipped":
        return "skipped"
    assert status in FAILURES, status
    return "failed"


def documented_verdict(run_if: str, edges: Sequence[Edge]) -> Verdict:
    """The run_if table from the docs, rule by rule."""
    if not edges:
        return "run"
    kinds = set(edges)
    some_failed = "failed" in kinds
    some_success = "success" in kinds
    if run_if == "all_success":
        if some_failed:
            return "upstream_failed"
        return "run" if kinds == {"success"} else "skipped"
    if run_if == "at_least_one_success":
        if some_success:
            return "run"
        return "upstream_failed" if some_failed else "skipped"
    if run_if == "none_failed":
        return "upstream_failed" if some_failed else "run"
    if run_if == "all_done":
        return "run"
    if run_if == "at_least_one_failed":
        return "run" if some_failed else "skipped"
    assert run_if == "all_failed", run_if
    return "run" if kinds == {"failed"} else "skipped"


def edge_lists(max_size: int = 3) -> list[tuple[Edge, ...]]:
    """Every sequence of edges up to ``max_size`` long (so every multiset, in every order)."""
    return [
        combo for size in range(max_size + 1) for combo in itertools.product(EDGES, repeat=size)
    ]


def test_the_states_and_rules_are_the_documented_ones() -> None:
    assert set(FINAL_TASK_STATES) == set(FINAL)
    assert set(EVERY_STATE) == set(FINAL) | set(NOT_FINAL)
    assert get_args(RunIf) == RUN_IF_RULES
    assert set(RUN_IF_RULES) == {
        "all_success",
        "at_least_one_success",
        "none_failed",
        "all_done",
        "at_least_one_failed",
        "all_failed",
    }


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


# --- edge ----------------------------------------------------------------------------------------

OUTCOMES: list[bool | None] = [None, True, False]
# True and False are a branch; anything else (even 1 or "true") chose no branch.
OUTPUTS: list[Any] = [True, False, None, 1, 0, "true", {"branch": True}]


@pytest.mark.parametrize("status", EVERY_STATE)
@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("output", OUTPUTS, ids=repr)
def test_edge_for_every_status_outcome_and_output(
    status: str, outcome: bool | None, output: Any
) -> None:
    need = Need("check", outcome)
    assert edge(need, status, output) == documented_edge(need, status, output)


def test_edges_by_example() -> None:
    assert edge(Need("load"), "running", None) is None
    assert edge(Need("load"), "succeeded", {"rows": 3}) == "success"
    assert edge(Need("check", True), "succeeded", True) == "success"
    assert edge(Need("check", True), "succeeded", False) == "skipped"
    assert edge(Need("check", False), "succeeded", False) == "success"
    assert edge(Need("check", True), "succeeded", 1) == "skipped"
    assert edge(Need("check", False), "succeeded", None) == "skipped"
    assert edge(Need("check", True), "skipped", True) == "skipped"
    assert edge(Need("check", True), "failed", True) == "failed"
    assert edge(Need("load"), "timed_out", None) == "failed"
    assert edge(Need("load"), "upstream_failed", None) == "failed"
    assert edge(Need("load"), "cancelled", None) == "failed"


def test_a_need_is_a_plain_wait_unless_it_names_an_outcome() -> None:
    assert Need("load") == Need("load", None)
    assert Need("check", True).task == "check"
    assert Need("check", True).outcome is True


# --- verdict -------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_if", RUN_IF_RULES)
def test_verdict_for_every_rule_over_every_edge_list_up_to_three(run_if: str) -> None:
    wrong = [
        (edges, got, want)
        for edges in edge_lists()
        if (got := verdict(run_if, edges)) != (want := documented_verdict(run_if, edges))
    ]
    assert wrong == [], f"{run_if}: (edges, got, expected)"


@pytest.mark.parametrize("run_if", RUN_IF_RULES)
def test_a_task_without_needs_runs_whatever_its_rule(run_if: str) -> None:
    assert verdict(run_if, []) == "run"


@pytest.mark.parametrize("run_if", RUN_IF_RULES)
def test_the_order_of_edges_never_matters(run_if: str) -> None:
    for edges in edge_lists():
        assert verdict(run_if, list(reversed(edges))) == verdict(run_if, edges)


def test_an_unknown_rule_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError) as caught:
        verdict("most_success", ["success"])
    assert str(caught.value) == "unknown run_if rule 'most_success'"


def test_verdicts_by_example() -> None:
    # A join after an if/else: one branch ran, the other was skipped.
    assert verdict("all_success", ["success", "skipped"]) == "skipped"
    assert verdict("none_failed", ["success", "skipped"]) == "run"
    assert verdict("none_failed", ["failed", "skipped"]) == "upstream_failed"
    # A cleanup task runs only when something failed.
    assert verdict("at_least_one_failed", ["success", "success"]) == "skipped"
    assert verdict("at_least_one_failed", ["success", "failed"]) == "run"
    # A notifier runs whatever happened above it.
    assert verdict("all_done", ["failed", "skipped", "success"]) == "run"
    # A fallback: one mirror is enough; none answering is a failure, all skipped is a skip.
    assert verdict("at_least_one_success", ["failed", "success"]) == "run"
    assert verdict("at_least_one_success", ["failed", "skipped"]) == "upstream_failed"
    assert verdict("at_least_one_success", ["skipped", "skipped"]) == "skipped"
    # An alarm for when every source is down; a skipped source means not every one failed.
    assert verdict("all_failed", ["failed", "failed"]) == "run"
    assert verdict("all_failed", ["failed", "skipped"]) == "skipped"


# --- combined_status and run_status --------------------------------------------------------------


@pytest.mark.parametrize("rule", RUN_IF_RULES)
def test_combined_status_is_whether_a_task_needing_the_group_would_run(rule: str) -> None:
    for size in range(4):
        for statuses in itertools.product(FINAL, repeat=size):
            edges = [documented_edge(Need("iteration"), s, None) for s in statuses]
            ran = documented_verdict(rule, [e for e in edges if e is not None]) == "run"
            expected = "succeeded" if ran else "failed"
            assert combined_status(rule, statuses) == expected, (rule, statuses)


def test_combined_status_by_example() -> None:
    assert combined_status("all_success", []) == "succeeded"
    assert combined_status("all_failed", []) == "succeeded"
    assert combined_status("all_success", ["succeeded", "succeeded"]) == "succeeded"
    assert combined_status("all_success", ["succeeded", "timed_out"]) == "failed"
    assert combined_status("all_success", ["succeeded", "skipped"]) == "failed"
    assert combined_status("at_least_one_success", ["failed", "succeeded"]) == "succeeded"
    assert combined_status("none_failed", ["skipped", "succeeded"]) == "succeeded"
    assert combined_status("none_failed", ["skipped", "cancelled"]) == "failed"
    assert combined_status("all_done", ["failed", "failed"]) == "succeeded"


def test_run_status_for_every_list_of_final_states_up_to_three() -> None:
    for size in range(4):
        for statuses in itertools.product(FINAL, repeat=size):
            ok = all(s in ("succeeded", "skipped") for s in statuses)
            assert run_status(statuses) == ("succeeded" if ok else "failed"), statuses


def test_run_status_reads_any_iterable() -> None:
    assert run_status(iter(["succeeded", "skipped"])) == "succeeded"
    assert run_status(s for s in ["succeeded", "upstream_failed"]) == "failed"


# --- Walk ----------------------------------------------------------------------------------------

DIAMOND: Graph = {
    "a": [],
    "b": [Need("a")],
    "c": [Need("a")],
    "d": [Need("b"), Need("c")],
}
CHAIN: Graph = {"a": [], "b": [Need("a")], "c": [Need("b")], "d": [Need("c")]}
# ``check`` is an ``if:`` task; ``report`` joins its two branches.
BRANCHES: Graph = {
    "check": [],
    "big": [Need("check", True)],
    "small": [Need("check", False)],
    "report": [Need("big"), Need("small")],
}
JOIN = {"report": "none_failed"}


def test_the_diamond_runs_in_waves() -> None:
    walk = Walk(DIAMOND, {})
    assert walk.start() == Steps(run=["a"])
    assert walk.finished("a", "succeeded") == Steps(run=["b", "c"])
    assert walk.finished("c", "succeeded") == Steps()
    assert walk.finished("b", "succeeded") == Steps(run=["d"])
    assert walk.finished("d", "succeeded") == Steps()


def test_independent_roots_all_start_at_once_in_file_order() -> None:
    walk = Walk({"z": [], "y": [], "x": [Need("z")]}, {})
    assert walk.start() == Steps(run=["z", "y"])


def test_a_failure_blocks_a_whole_chain_in_one_step() -> None:
    walk = Walk(CHAIN, {})
    assert walk.start() == Steps(run=["a"])
    assert walk.finished("a", "failed") == Steps(upstream_failed=["b", "c", "d"])


def test_a_chain_runs_one_task_at_a_time() -> None:
    walk = Walk(CHAIN, {})
    assert walk.start() == Steps(run=["a"])
    for task, after in itertools.pairwise(CHAIN):
        assert walk.finished(task, "succeeded") == Steps(run=[after])
    assert walk.finished("d", "succeeded") == Steps()


def test_a_failure_leaves_independent_branches_alone() -> None:
    walk = Walk({"a": [], "b": [Need("a")], "x": [], "y": [Need("x")]}, {})
    assert walk.start() == Steps(run=["a", "x"])
    assert walk.finished("a", "timed_out") == Steps(upstream_failed=["b"])
    assert walk.finished("x", "succeeded") == Steps(run=["y"])


def test_a_skip_propagates_through_all_success_and_stops_at_none_failed() -> None:
    graph: Graph = {
        "check": [],
        "publish": [Need("check", True)],
        "announce": [Need("publish")],
        "tweet": [Need("announce")],
        "archive": [Need("tweet")],
    }
    walk = Walk(graph, {"archive": "none_failed"})
    assert walk.start() == Steps(run=["check"])
    assert walk.finished("check", "succeeded", False) == Steps(
        run=["archive"], skipped=["publish", "announce", "tweet"]
    )


def test_the_untaken_branch_is_skipped_and_the_taken_one_runs() -> None:
    walk = Walk(BRANCHES, JOIN)
    assert walk.start() == Steps(run=["check"])
    assert walk.finished("check", "succeeded", True) == Steps(run=["big"], skipped=["small"])

    walk = Walk(BRANCHES, JOIN)
    walk.start()
    assert walk.finished("check", "succeeded", False) == Steps(run=["small"], skipped=["big"])


def test_a_join_after_an_if_else_runs_with_none_failed() -> None:
    walk = Walk(BRANCHES, JOIN)
    walk.start()
    walk.finished("check", "succeeded", True)
    assert walk.finished("big", "succeeded") == Steps(run=["report"])


def test_a_join_after_an_if_else_is_skipped_with_all_success() -> None:
    walk = Walk(BRANCHES, {})
    walk.start()
    walk.finished("check", "succeeded", True)
    assert walk.finished("big", "succeeded") == Steps(skipped=["report"])


def test_a_failed_branch_fails_the_join() -> None:
    walk = Walk(BRANCHES, JOIN)
    walk.start()
    walk.finished("check", "succeeded", False)
    assert walk.finished("small", "failed") == Steps(upstream_failed=["report"])


def test_a_failed_if_task_blocks_both_branches_and_the_join() -> None:
    walk = Walk(BRANCHES, JOIN)
    walk.start()
    assert walk.finished("check", "failed") == Steps(upstream_failed=["big", "small", "report"])


def test_an_if_task_that_chose_no_boolean_takes_neither_branch() -> None:
    walk = Walk(BRANCHES, JOIN)
    walk.start()
    assert walk.finished("check", "succeeded", "yes") == Steps(
        run=["report"], skipped=["big", "small"]
    )


@pytest.mark.parametrize("bad", FAILURES)
def test_a_cleanup_task_runs_only_after_a_failure(bad: str) -> None:
    graph: Graph = {"load": [], "cleanup": [Need("load")]}
    walk = Walk(graph, {"cleanup": "at_least_one_failed"})
    walk.start()
    assert walk.finished("load", bad) == Steps(run=["cleanup"])

    walk = Walk(graph, {"cleanup": "at_least_one_failed"})
    walk.start()
    assert walk.finished("load", "succeeded") == Steps(skipped=["cleanup"])


@pytest.mark.parametrize("load", ["succeeded", "failed", "cancelled"])
def test_an_all_done_notifier_runs_whatever_happened(load: str) -> None:
    graph: Graph = {
        "load": [],
        "publish": [Need("load")],
        "notify": [Need("load"), Need("publish")],
    }
    walk = Walk(graph, {"notify": "all_done"})
    walk.start()
    steps = walk.finished("load", load)
    if load == "succeeded":
        assert steps == Steps(run=["publish"])
        steps = walk.finished("publish", "succeeded")
        assert steps == Steps(run=["notify"])
    else:
        assert steps == Steps(run=["notify"], upstream_failed=["publish"])


def test_no_task_is_decided_while_one_of_its_needs_still_runs() -> None:
    walk = Walk(DIAMOND, {})
    walk.start()
    walk.finished("a", "succeeded")
    # all_success will fail d, but only once c has ended too.
    assert walk.finished("b", "failed") == Steps()
    assert walk.finished("c", "succeeded") == Steps(upstream_failed=["d"])

    walk = Walk(DIAMOND, {"d": "at_least_one_success"})
    walk.start()
    walk.finished("a", "succeeded")
    assert walk.finished("b", "succeeded") == Steps()
    assert walk.finished("c", "failed") == Steps(run=["d"])


def test_a_rule_left_out_is_all_success() -> None:
    graph: Graph = {"a": [], "b": [], "c": [Need("a"), Need("b")]}
    walk = Walk(graph, {"a": "all_done"})
    walk.start()
    walk.finished("a", "succeeded")
    assert walk.finished("b", "skipped") == Steps(skipped=["c"])


def test_a_task_blocked_through_two_needs_is_reported_once() -> None:
    walk = Walk(DIAMOND, {})
    walk.start()
    assert walk.finished("a", "failed") == Steps(upstream_failed=["b", "c", "d"])


def test_a_task_needing_the_same_task_twice_is_reported_once() -> None:
    walk = Walk({"check": [], "both": [Need("check", True), Need("check", False)]}, {})
    walk.start()
    assert walk.finished("check", "succeeded", True) == Steps(skipped=["both"])

    walk = Walk({"check": [], "both": [Need("check", True), Need("check", False)]}, {})
    walk.start()
    assert walk.finished("check", "failed") == Steps(upstream_failed=["both"])


def test_a_restored_walk_goes_on_from_the_given_states() -> None:
    walk = Walk(DIAMOND, {}, {"a": "succeeded", "b": "succeeded"})
    assert walk.start() == Steps(run=["c"])
    assert walk.finished("c", "succeeded") == Steps(run=["d"])


def test_a_restored_walk_does_not_start_tasks_already_running_or_decide_early() -> None:
    walk = Walk(DIAMOND, {}, {"a": "succeeded", "b": "failed", "c": "running"})
    assert walk.start() == Steps()
    assert walk.finished("c", "succeeded") == Steps(upstream_failed=["d"])


def test_a_restored_walk_decides_pending_tasks_below_final_ones() -> None:
    walk = Walk(CHAIN, {}, {"a": "failed"})
    assert walk.start() == Steps(upstream_failed=["b", "c", "d"])

    walk = Walk(CHAIN, {"d": "all_done"}, {"a": "succeeded", "b": "cancelled"})
    assert walk.start() == Steps(run=["d"], upstream_failed=["c"])


def test_a_restored_walk_remembers_which_branch_an_if_task_chose() -> None:
    walk = Walk(BRANCHES, JOIN, {"check": "succeeded"}, {"check": False})
    assert walk.start() == Steps(run=["small"], skipped=["big"])
    assert walk.finished("small", "succeeded") == Steps(run=["report"])


def test_a_restored_walk_with_every_task_final_has_nothing_to_do() -> None:
    walk = Walk(DIAMOND, {}, dict.fromkeys(DIAMOND, "succeeded"))
    assert walk.start() == Steps()


def test_a_restored_task_pending_again_is_started_again() -> None:
    # The executor turns a task cut off while running back into pending.
    walk = Walk(DIAMOND, {}, {"a": "succeeded", "b": "pending", "c": "succeeded"})
    assert walk.start() == Steps(run=["b"])
    assert walk.finished("b", "succeeded") == Steps(run=["d"])


# --- properties over random graphs ---------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A random pipeline and how each of its tasks ends if it runs."""

    needs: Graph
    #: Tasks left out use the default rule, all_success.
    run_if: dict[str, str]
    #: succeeded, failed or timed_out.
    results: dict[str, str]
    #: What an ``if:`` task chose when it succeeded (``None`` for other tasks).
    outputs: dict[str, bool | None]

    def output(self, task: str, status: str) -> bool | None:
        return self.outputs[task] if status == "succeeded" else None


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """Up to 12 tasks, each needing only earlier ones, listed in any order."""
    count = draw(st.integers(min_value=1, max_value=12))
    names = [f"t{i}" for i in range(count)]
    is_if = [draw(st.booleans()) for _ in names]
    needs: Graph = {}
    for i, name in enumerate(names):
        drawn: list[tuple[int, bool | None]] = []
        if i:
            drawn = draw(
                st.lists(
                    st.tuples(st.integers(0, i - 1), st.sampled_from(OUTCOMES)),
                    max_size=4,
                    unique=True,
                )
            )
        task_needs: list[Need] = []
        for dep, outcome in drawn:
            need = Need(names[dep], outcome if is_if[dep] else None)
            if need not in task_needs:
                task_needs.append(need)
        needs[name] = task_needs
    run_if: dict[str, str] = {}
    for name in names:
        rule = draw(st.sampled_from([*RUN_IF_RULES, "default"]))
        if rule != "default":
            run_if[name] = rule
    results = {n: draw(st.sampled_from(["succeeded", "failed", "timed_out"])) for n in names}
    outputs = {n: draw(st.booleans()) if is_if[i] else None for i, n in enumerate(names)}
    order = draw(st.permutations(names))
    return Plan({n: needs[n] for n in order}, run_if, results, outputs)


def reference_states(plan: Plan) -> dict[str, str]:
    """Each task's final state, computed from its needs' final states by the documented rules."""
    states: dict[str, str] = {}

    def state(task: str) -> str:
        if task not in states:
            edges = [
                documented_edge(n, state(n.task), plan.output(n.task, state(n.task)))
                for n in plan.needs[task]
            ]
            assert all(e is not None for e in edges)
            rule = plan.run_if.get(task, "all_success")
            decided = documented_verdict(rule, [e for e in edges if e is not None])
            states[task] = plan.results[task] if decided == "run" else decided
        return states[task]

    for task in plan.needs:
        state(task)
    return states


class Executor:
    """Plays the executor: starts what a Walk says and reports each task's planned result,
    checking every decision as it comes."""

    def __init__(self, plan: Plan, statuses: Mapping[str, str] | None = None) -> None:
        self.plan = plan
        self.status = {task: "pending" for task in plan.needs}
        self.status.update(statuses or {})
        outputs = {t: plan.output(t, s) for t, s in self.status.items() if s in FINAL}
        self.walk = Walk(plan.needs, plan.run_if, statuses, outputs)
        self.started: set[str] = set()
        self.not_run: set[str] = set()
        self.apply(self.walk.start())

    def apply(self, steps: Steps) -> None:
        decisions = [
            *((t, "running") for t in steps.run),
            *((t, "skipped") for t in steps.skipped),
            *((t, "upstream_failed") for t in steps.upstream_failed),
        ]
        for task, decision in decisions:
            assert self.status[task] == "pending", f"{task} decided again ({decision})"
            self.status[task] = decision
            (self.started if decision == "running" else self.not_run).add(task)
        for task, decision in decisions:
            early = [n.task for n in self.plan.needs[task] if self.status[n.task] not in FINAL]
            assert not early, f"{task} decided {decision} before {early} ended"

    def running(self) -> list[str]:
        return [task for task, status in self.status.items() if status == "running"]

    def finish(self, task: str) -> None:
        result = self.plan.results[task]
        self.status[task] = result
        self.apply(self.walk.finished(task, result, self.plan.output(task, result)))

    def drive(self, choose: Callable[[list[str]], str], limit: int | None = None) -> None:
        """Report running tasks' ends, one at a time, ``limit`` of them or until none runs."""
        done = 0
        while (running := self.running()) and (limit is None or done < limit):
            self.finish(choose(running))
            done += 1


def oldest(running: list[str]) -> str:
    return running[0]


def newest(running: list[str]) -> str:
    return running[-1]


@given(plans(), st.data())
def test_a_walk_ends_every_task_as_the_rules_say(plan: Plan, data: st.DataObject) -> None:
    executor = Executor(plan)
    executor.drive(lambda running: data.draw(st.sampled_from(running), label="ends next"))
    assert all(status in FINAL for status in executor.status.values()), executor.status
    assert not executor.started & executor.not_run
    assert executor.started | executor.not_run == set(plan.needs)
    assert executor.status == reference_states(plan)


@given(plans(), st.data())
def test_the_order_tasks_end_in_does_not_change_how_they_end(
    plan: Plan, data: st.DataObject
) -> None:
    ends: list[dict[str, str]] = []
    for choose in (
        oldest,
        newest,
        lambda running: data.draw(st.sampled_from(running), label="ends next"),
    ):
        executor = Executor(plan)
        executor.drive(choose)
        ends.append(executor.status)
    assert ends[0] == ends[1] == ends[2]


@given(plans(), st.data())
def test_a_walk_restored_midway_ends_the_same(plan: Plan, data: st.DataObject) -> None:
    """A run taken over after a crash: final states kept, running tasks pending again."""
    before = Executor(plan)
    before.drive(oldest, limit=data.draw(st.integers(0, len(plan.needs)), label="ended first"))
    kept = {t: ("pending" if s == "running" else s) for t, s in before.status.items()}
    after = Executor(plan, kept)
    after.drive(lambda running: data.draw(st.sampled_from(running), label="ends next"))
    assert after.status == reference_states(plan)
    assert not after.started & set(before.not_run)


# --- find_cycle and topological_order over random DAGs -------------------------------------------


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


def edges_of(needs: Needs) -> list[tuple[str, str]]:
    return [(dep, task) for task, deps in needs.items() for dep in deps]


@given(dags())
def test_topological_order_respects_every_edge(needs: Needs) -> None:
    order = topological_order(needs)
    assert sorted(order) == sorted(needs)
    position = {task: i for i, task in enumerate(order)}
    for dep, task in edges_of(needs):
        assert position[dep] < position[task]


@given(dags())
def test_a_dag_has_no_cycle(needs: Needs) -> None:
    assert find_cycle(needs) is None


@given(dags(), st.data())
def test_a_back_edge_makes_a_cycle_that_find_cycle_reports(
    needs: Needs, data: st.DataObject
) -> None:
    pairs = edges_of(needs)
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
