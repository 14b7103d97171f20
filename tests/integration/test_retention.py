"""Retention passes on every store: exactly the old finished runs and old events go."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import wait_for

from reactor.clock import FakeClock
from reactor.events import Event
from reactor.grouping import Window
from reactor.retention import (
    PipelineRetentionSpec,
    Pruned,
    RetentionSpec,
    plan_retention,
    prune,
)
from reactor.specs import run_event_source
from reactor.store import AttemptRecord, LogLine, RunRecord, Store, TaskRecord
from reactor.store.records import WindowRow

from .support import pump

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def add_run(
    store: Store,
    run_id: str,
    *,
    pipeline: str = "orders",
    status: str = "succeeded",
    ended: float | None = None,
    created: float = 60,
    event_ids: list[str] | None = None,
    log_lines: int = 2,
) -> RunRecord:
    """A run created ``created`` days ago (ended ``ended`` days ago) with one task, one
    attempt and ``log_lines`` log lines."""
    final = status in {"succeeded", "failed", "cancelled"}
    run = RunRecord(
        id=run_id,
        run_key=f"key-{run_id}",
        pipeline=pipeline,
        version="v1",
        status=status,
        params={},
        trigger=None,
        event_ids=event_ids or [],
        created_at=ago(created),
        started_at=ago(created) if status != "queued" else None,
        ended_at=ago(ended if ended is not None else created) if final else None,
    )
    assert (await store.create_run(run)).new
    if status == "queued":
        return run
    task = TaskRecord(run_id, "t", "succeeded" if final else "running", 1, ago(created))
    attempt = AttemptRecord(
        run_id, "t", 1, task.status, "owner", ago(created), ago(created), run.ended_at
    )
    await store.save_tasks([task], [attempt])
    await store.append_logs(
        [LogLine(run_id, "t", 1, "stdout", ago(created), f"line {n}") for n in range(log_lines)]
    )
    return run


async def add_event(
    store: Store,
    event_id: str,
    *,
    received: float,
    evaluated: bool = True,
    source: str = "tests",
) -> Event:
    event = Event(type="order.created", source=source, id=event_id, time=ago(received))
    _, new = await store.ingest(event, ago(received), evaluated=evaluated)
    assert new
    return event


async def run_ids(store: Store, pipeline: str | None = None) -> set[str]:
    runs = await store.list_runs(pipeline=pipeline, limit=1000, before=None)
    return {run.id for run in runs}


async def has_event(store: Store, event_id: str, source: str = "tests") -> bool:
    return await store.get_event(source, event_id) is not None


async def pass_at(
    store: Store,
    settings: dict[str, Any] | None,
    pipelines: dict[str, dict[str, Any] | None] | None = None,
    *,
    batch: int = 500,
) -> Pruned:
    spec = RetentionSpec.model_validate(settings) if settings is not None else None
    own = {
        name: PipelineRetentionSpec.model_validate(values) if values is not None else None
        for name, values in (pipelines or {"orders": None}).items()
    }
    return await prune(store, plan_retention(NOW, spec, own), batch=batch)


async def test_old_finished_runs_go_with_their_tasks_attempts_and_logs(store: Store) -> None:
    for n in range(1, 5):
        await add_run(store, f"old{n}", ended=40, log_lines=3)
    await add_run(store, "running", status="running", created=90)
    await add_run(store, "queued", status="queued", created=90)
    await add_run(store, "failed-young", status="failed", ended=1)

    pruned = await pass_at(store, {"runs": "30d"})

    assert (pruned.runs, pruned.events, pruned.log_lines) == (4, 0, 12)
    assert await run_ids(store) == {"running", "queued", "failed-young"}
    for gone in ("old1", "old4"):
        assert await store.task_runs(gone) == []
        assert await store.attempts(gone) == []
        assert await store.logs(gone, after=0, limit=10) == []
    assert len(await store.task_runs("running")) == 1
    assert len(await store.attempts("running")) == 1
    assert len(await store.logs("failed-young", after=0, limit=10)) == 2
    # A second pass finds nothing more to remove.
    assert (await pass_at(store, {"runs": "30d"})).runs == 0
    assert await run_ids(store) == {"running", "queued", "failed-young"}


async def test_the_newest_keep_runs_stay_however_old(store: Store) -> None:
    for n in range(1, 6):
        await add_run(store, f"old{n}", ended=40 - n)
    # Not final: never counted among the kept ones, never removed.
    await add_run(store, "running", status="running", created=50)

    pruned = await pass_at(store, {"runs": "30d", "keep_runs": 2})

    assert pruned.runs == 3
    assert await run_ids(store) == {"old4", "old5", "running"}


async def test_keep_runs_alone_removes_all_but_the_newest(store: Store) -> None:
    for n in range(1, 6):
        await add_run(store, f"r{n}", ended=5 - n)
    assert (await pass_at(store, {"keep_runs": 2})).runs == 3
    assert await run_ids(store) == {"r4", "r5"}


async def test_a_pipeline_override_wins_over_the_settings(store: Store) -> None:
    await add_run(store, "noisy-5d", pipeline="noisy", ended=5)
    await add_run(store, "noisy-1d", pipeline="noisy", ended=1)
    await add_run(store, "orders-5d", ended=5)
    await add_run(store, "orders-40d", ended=40)
    # A pipeline no longer loaded follows the settings.
    await add_run(store, "gone-40d", pipeline="gone", ended=40)

    pruned = await pass_at(
        store, {"runs": "30d"}, {"orders": None, "noisy": {"runs": "2d", "keep_runs": 0}}
    )

    assert pruned.runs == 3
    assert await run_ids(store) == {"noisy-1d", "orders-5d"}


async def test_only_pipelines_with_a_retention_lose_runs_without_settings(store: Store) -> None:
    await add_run(store, "noisy-5d", pipeline="noisy", ended=5)
    await add_run(store, "orders-400d", ended=400)
    pruned = await pass_at(store, None, {"orders": None, "noisy": {"runs": "2d"}})
    assert pruned.runs == 1
    assert await run_ids(store) == {"orders-400d"}


async def test_runs_go_in_batches_until_none_is_left(store: Store) -> None:
    for n in range(7):
        await add_run(store, f"old{n}", ended=40, log_lines=1)
    pruned = await pass_at(store, {"runs": "30d"}, batch=2)
    assert (pruned.runs, pruned.log_lines) == (7, 7)
    assert await run_ids(store) == set()


async def test_old_events_go_unless_something_still_needs_them(store: Store) -> None:
    await add_event(store, "plain-old", received=10)
    await add_event(store, "young", received=1)
    await add_event(store, "unevaluated", received=10, evaluated=False)
    await add_event(store, "named-by-kept", received=50)
    await add_event(store, "named-by-removed", received=50)
    await add_event(store, "held-by-window", received=10)
    await add_run(store, "kept", ended=1, event_ids=["named-by-kept"])
    await add_run(store, "removed", ended=40, event_ids=["named-by-removed"])
    # A kept run's end event: without it the next start would make the event again.
    await add_event(store, "kept", received=20, source=run_event_source("orders"))
    await add_event(store, "removed", received=20, source=run_event_source("orders"))
    # Another source's event with a kept run's id is not that run's end event.
    await add_event(store, "kept", received=20, source="elsewhere")
    window = Window("orders/batch", "batch", "g1", ago(10), events=[("tests", "held-by-window")])
    await store.save_windows(
        [WindowRow("orders/batch", "batch", 1, window.state(), None)], [], ago(10)
    )

    pruned = await pass_at(store, {"runs": "30d", "events": "7d"})

    assert (pruned.runs, pruned.events) == (1, 4)
    assert not await has_event(store, "plain-old")
    assert not await has_event(store, "named-by-removed")
    assert not await has_event(store, "removed", run_event_source("orders"))
    assert not await has_event(store, "kept", "elsewhere")
    for kept in ("young", "unevaluated", "named-by-kept", "held-by-window"):
        assert await has_event(store, kept), kept
    assert await has_event(store, "kept", run_event_source("orders"))
    assert [run.id for run in await store.runs_without_event(run_event_source(""), 10)] == []
    # Nothing more goes on a second pass.
    again = await pass_at(store, {"runs": "30d", "events": "7d"})
    assert (again.runs, again.events, again.log_lines) == (0, 0, 0)


async def test_events_go_in_batches_past_the_ones_that_stay(store: Store) -> None:
    # The protected events come first in received order, so a batch that only looked at
    # the oldest rows would stop early.
    await add_event(store, "unevaluated", received=30, evaluated=False)
    await add_event(store, "named", received=30)
    await add_run(store, "kept", ended=1, event_ids=["named"])
    for n in range(5):
        await add_event(store, f"old{n}", received=20 - n)
    pruned = await pass_at(store, {"events": "7d"}, batch=2)
    assert pruned.events == 5
    assert await has_event(store, "unevaluated")
    assert await has_event(store, "named")


async def test_without_retention_a_pass_removes_nothing(store: Store) -> None:
    await add_run(store, "ancient", ended=4000)
    await add_event(store, "ancient-event", received=4000)
    pruned = await pass_at(store, None, {"orders": None})
    assert (pruned.runs, pruned.events, pruned.log_lines) == (0, 0, 0)
    assert await run_ids(store) == {"ancient"}
    assert await has_event(store, "ancient-event")


# --- the service's background pass --------------------------------------------------------------


async def test_the_service_removes_an_old_run_on_its_clock(
    store: Store,
    start_reactor: Any,
    write_pipeline: Any,
    pipelines_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    clock = FakeClock(NOW)
    (pipelines_dir / "reactor.yaml").write_text(
        "retention:\n  runs: 30d\n  every: 1h\n", encoding="utf-8"
    )
    write_pipeline(
        "orders.yaml",
        """
        name: orders
        tasks:
          - id: hello
            shell: echo hi
        """,
    )
    await add_run(store, "old", ended=40)
    await add_run(store, "young", ended=1)

    def summaries() -> list[str]:
        return [m for r in caplog.records if (m := r.getMessage()).startswith("retention:")]

    async with start_reactor(clock=clock), anyio.create_task_group() as tg:
        # The heartbeat and the retention loop both sleep on the clock: time moves only
        # when both wait, an hour (one retention period) at a time.
        tg.start_soon(lambda: pump(clock, step=3600, idle_sleepers=1))
        await wait_for(lambda: bool(summaries()), message="a retention pass")
        tg.cancel_scope.cancel()
    assert summaries()[0].startswith("retention: removed 1 runs, 0 events, 2 log lines in ")
    assert await run_ids(store) == {"young"}
    assert clock.now() >= NOW + timedelta(hours=1)
