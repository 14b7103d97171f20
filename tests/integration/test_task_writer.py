"""Group commit of task transitions: latest state per row, in order, failures surfaced."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import anyio
import pytest

from reactor.errors import StoreError
from reactor.events import Event
from reactor.store import AttemptRecord, LogLine, RunRecord, Store, TaskEvent, TaskRecord
from reactor.writes import TaskWriter

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

NOW = datetime(2026, 1, 1, tzinfo=UTC)


async def make_run(store: Store) -> str:
    run = RunRecord("run-1", "key-1", "p", "v1", "running", {}, None, [], NOW)
    await store.create_run(run)
    return run.id


async def test_many_changes_end_as_the_latest_state_of_each_row(store: Store) -> None:
    run_id = await make_run(store)
    writer = TaskWriter(store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for n in range(50):
            task = TaskRecord(run_id, f"t{n % 5}", "running", attempts=n)
            attempt = AttemptRecord(run_id, task.task_id, 1, "running", "me", NOW, NOW)
            writer.submit(
                [task], [attempt], [LogLine(run_id, task.task_id, 1, "stdout", NOW, f"{n}")]
            )
            if n % 7 == 0:
                await anyio.lowlevel.checkpoint()  # let some batches go out mid-way
        final = TaskRecord(run_id, "t0", "succeeded", attempts=99, output={"rows": 3})
        writer.submit([final])
        await writer.drain()
        tg.cancel_scope.cancel()
    tasks = {t.task_id: t for t in await store.task_runs(run_id)}
    assert tasks["t0"].status == "succeeded"
    assert tasks["t0"].output == {"rows": 3}
    assert tasks["t4"].attempts == 49
    lines = [line.line for line in await store.logs(run_id, after=0, limit=100)]
    assert lines == [str(n) for n in range(50)]


async def test_a_copy_is_written_not_what_the_caller_changed_afterwards(store: Store) -> None:
    run_id = await make_run(store)
    writer = TaskWriter(store)
    task = TaskRecord(run_id, "a", "running")
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.submit([task])
        task.status = "succeeded"  # not submitted: the store must not see it
        await writer.drain()
        tg.cancel_scope.cancel()
    assert [t.status for t in await store.task_runs(run_id)] == ["running"]


class BrokenStore:
    """A store whose task writes fail, to see the failure reach drain()."""

    async def save_tasks(
        self,
        tasks: Sequence[TaskRecord],
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[TaskEvent] = (),
    ) -> list[Event]:
        raise StoreError("SQLite: database is locked")

    async def append_logs(self, lines: Sequence[LogLine]) -> None:
        return None


async def test_a_failed_write_is_raised_by_drain() -> None:
    writer = TaskWriter(BrokenStore())  # type: ignore[arg-type]
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        writer.submit([TaskRecord("r", "a", "running")])
        with pytest.raises(StoreError, match="database is locked"):
            await writer.drain()
        tg.cancel_scope.cancel()
