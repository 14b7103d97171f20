"""Repair planning: which tasks run again, and the reason that numbers each repair."""

from __future__ import annotations

import pytest

from reactor.dag import Need
from reactor.repair import (
    RepairError,
    RepairPlan,
    UnknownTaskError,
    plan_repair,
    repair_number,
    repair_reason,
    reset_records,
)
from reactor.store import TaskRecord

# extract -> load -> report; load -> audit (only when load fails); side alone.
ORDER = ["extract", "side", "load", "report", "audit"]
NEEDS = {
    "extract": [],
    "side": [],
    "load": [Need("extract")],
    "report": [Need("load")],
    "audit": [Need("load")],
}


def statuses(**changed: str) -> dict[str, str]:
    return dict.fromkeys(ORDER, "succeeded") | changed


def test_the_not_succeeded_tasks_and_their_descendants_run_again() -> None:
    plan = plan_repair(
        "failed", ORDER, NEEDS, statuses(load="failed", report="upstream_failed", audit="skipped")
    )
    assert plan == RepairPlan(("load", "report"), ("load", "report", "audit"))


@pytest.mark.parametrize("status", ["failed", "timed_out", "cancelled", "upstream_failed"])
def test_every_kind_of_not_succeeded_is_chosen(status: str) -> None:
    plan = plan_repair("failed", ORDER, NEEDS, statuses(side=status))
    assert plan == RepairPlan(("side",), ("side",))


def test_a_task_the_run_never_recorded_counts_as_not_run() -> None:
    recorded = statuses()
    del recorded["audit"]
    assert plan_repair("succeeded", ORDER, NEEDS, recorded).reset == ("audit",)


def test_named_tasks_run_again_even_if_they_succeeded() -> None:
    plan = plan_repair("succeeded", ORDER, NEEDS, statuses(), ["report", "extract"])
    assert plan.chosen == ("extract", "report")
    assert plan.reset == ("extract", "load", "report", "audit")


def test_skipped_tasks_alone_are_nothing_to_repair() -> None:
    with pytest.raises(RepairError, match="nothing to repair: every task succeeded or was skipped"):
        plan_repair("succeeded", ORDER, NEEDS, statuses(audit="skipped"))


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_run_not_finished_is_refused(status: str) -> None:
    with pytest.raises(RepairError, match=f"the run is {status}: only a finished run"):
        plan_repair(status, ORDER, NEEDS, statuses(load="failed"))


def test_unknown_tasks_are_named_with_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError) as caught:
        plan_repair("failed", ORDER, NEEDS, statuses(), ["load", "nope", "gone"])
    assert str(caught.value) == (
        "no task 'nope', 'gone' in the pipeline (tasks: extract, side, load, report, audit)"
    )


def test_an_empty_task_list_is_refused() -> None:
    with pytest.raises(RepairError, match="--tasks names no task"):
        plan_repair("failed", ORDER, NEEDS, statuses(), [])


def test_reset_records_keep_attempts_and_reset_loop_iterations() -> None:
    stored = [
        TaskRecord("r", "extract", "succeeded", 1, output=21),
        TaskRecord("r", "load", "failed", 3, error="boom"),
        TaskRecord("r", "load[0]", "succeeded", 1, output=1),
        TaskRecord("r", "load[1]", "failed", 2, error="bad"),
        TaskRecord("r", "report", "upstream_failed", 0),
    ]
    plan = RepairPlan(("load",), ("load", "report"))
    changed = reset_records(stored, plan)
    assert [(r.task_id, r.status, r.attempts, r.error, r.output) for r in changed] == [
        ("load", "pending", 3, None, None),
        ("load[0]", "pending", 1, None, None),
        ("load[1]", "pending", 2, None, None),
        ("report", "pending", 0, None, None),
    ]
    assert stored[0].status == "succeeded" and stored[0].output == 21


def test_the_reason_names_the_repair_and_gives_its_number_back() -> None:
    reason = repair_reason(3, "cli:ann@host", RepairPlan(("load", "report"), ("load", "report")))
    assert reason == "repair 3 by cli:ann@host: tasks load, report"
    assert repair_number(reason) == 3


@pytest.mark.parametrize(
    "reason", [None, "task load failed", "repair x by api: tasks a", "repair 2 of them", ""]
)
def test_other_reasons_name_no_repair(reason: str | None) -> None:
    assert repair_number(reason) is None
