"""A run whose bookkeeping fails (a store outage) still ends, failed, saying why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import Recorder

from reactor.errors import StoreError
from reactor.events import Event
from reactor.service import Reactor, Settings
from reactor.store import SqliteStore, TaskEvent
from reactor.store.records import AttemptRecord, TaskRecord

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class FailingTaskWrites(SqliteStore):
    """The real SQLite store, with task writes failing once ``failing`` is set."""

    failing = False

    async def save_tasks(
        self,
        tasks: Sequence[TaskRecord],
        attempts: Sequence[AttemptRecord] = (),
        events: Sequence[TaskEvent] = (),
    ) -> list[Event]:
        if self.failing:
            raise StoreError("SQLite: disk I/O error")
        return await super().save_tasks(tasks, attempts, events)


async def test_a_store_outage_mid_run_fails_the_run_and_tells_observers(
    tmp_path: Path, pipelines_dir: Path
) -> None:
    (pipelines_dir / "p.yaml").write_text("name: p\ntasks:\n  - id: a\n    shell: 'true'\n")
    store = FailingTaskWrites(tmp_path / "reactor.db")
    recorder = Recorder()
    async with Reactor(
        pipelines_dir, store, settings=Settings(reload=False), observers=[recorder]
    ) as reactor:
        store.failing = True
        run = await reactor.run_now("p")
        (finished,) = await recorder.wait_finished(1)
        assert finished.id == run.id
        assert finished.status == "failed"
        assert finished.reason == "internal error: StoreError: SQLite: disk I/O error"
        stored = await store.get_run(run.id)
        assert stored is not None
        assert (stored.status, stored.reason) == ("failed", finished.reason)
        assert reactor.health()["active_runs"] == 0
