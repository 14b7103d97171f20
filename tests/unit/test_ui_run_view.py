"""What a run's page lists: every task in a small run, the first ones and the notable in a
big one (the graph always has them all), and the timeline on the whole run's scale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reactor.store.records import AttemptRecord, RunRecord, TaskRecord
from reactor.ui.layout import layered
from reactor.ui.run_view import ROWS_AT_ONCE, ROWS_FIRST, run_view

T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _run(status: str = "running") -> RunRecord:
    return RunRecord("r1", "k", "big", "v1", status, {}, None, [], T0, started_at=T0)


def _tasks(count: int) -> tuple[list[TaskRecord], list[AttemptRecord]]:
    records, attempts = [], []
    for n in range(count):
        start = T0 + timedelta(seconds=n)
        end = start + timedelta(seconds=1)
        records.append(TaskRecord("r1", f"t{n:04d}", "succeeded", 1, start, end))
        attempts.append(AttemptRecord("r1", f"t{n:04d}", 1, "succeeded", "me", start, end, end))
    return records, attempts


def test_a_small_run_lists_every_task() -> None:
    records, attempts = _tasks(ROWS_AT_ONCE)
    view = run_view(_run(), None, records, attempts, T0 + timedelta(hours=1))
    assert len(view.listed) == ROWS_AT_ONCE
    assert view.unlisted == 0
    assert view.all_rows
    assert len(view.timeline) == ROWS_AT_ONCE


def test_a_big_run_lists_the_first_tasks_and_every_running_or_failed_one() -> None:
    records, attempts = _tasks(1000)
    records[500].status = "failed"
    records[700].status = "running"
    records[800].status = "upstream_failed"
    # A running run's scale ends now.
    view = run_view(_run(), None, records, attempts, T0 + timedelta(seconds=1000))
    listed = [row.id for row in view.listed]
    assert listed == [f"t{n:04d}" for n in range(ROWS_FIRST)] + ["t0500", "t0700"]
    assert view.unlisted == 1000 - ROWS_FIRST - 2
    assert not view.all_rows
    # The graph and the counts keep every task; the timeline draws the listed ones on the
    # scale of the whole run.
    assert len(view.layout.boxes) == 1000
    assert sum(view.counts.values()) == 1000
    assert [task for task, _ in view.timeline] == listed
    assert view.span == (T0, T0 + timedelta(seconds=1000))
    [(_, [bar])] = [line for line in view.timeline if line[0] == "t0500"]
    assert bar.left == 50.0


def test_asking_for_all_rows_lists_them_all() -> None:
    records, attempts = _tasks(400)
    view = run_view(_run(), None, records, attempts, T0, all_rows=True)
    assert len(view.listed) == 400
    assert view.unlisted == 0


def test_edges_are_one_path_and_arrowheads_another() -> None:
    layout = layered(["a", "b", "c", "d"], [("a", "c"), ("b", "c"), ("c", "d")])
    assert layout.edges_path.count("M") == 3
    # One arrowhead per task with needs, at its box's left middle.
    assert layout.arrows_path.count("M") == 2
    c = layout.boxes["c"]
    assert f"M{c.x:.1f},{c.middle:.1f} " in layout.arrows_path
    assert layered(["a"], []).arrows_path == ""
