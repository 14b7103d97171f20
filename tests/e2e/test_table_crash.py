"""A real ``reactor serve`` polling a table is SIGKILLed while rows pour in, then restarted.

Every row inserted, before, during and after the crash, starts exactly one run.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest
from helpers import wait_for
from pg import PostgresDatabases

from reactor.store import open_store

from .commands import Served
from .conftest import StartServe

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

ROWS = 1000
KILL_AFTER_RUNS = 50

PIPELINE = """\
name: orders
params:
  id: {{type: integer}}
triggers:
  - on: table
    connection: {url}
    table: orders
    watermark: id
    overlap: 200
    interval: 50ms
    from: earliest
    params: {{id: "{{{{ event.data.row.id }}}}"}}
tasks:
  - id: record
    python: steps:record
    args: {{id: "{{{{ params.id }}}}"}}
    # An attempt cut off by the kill counts as one (crashed): the retry finishes the run.
    retries: {{max: 2, delay: 0.05}}
"""

STEPS = """\
def record(id):
    return id
"""


@pytest.fixture
async def table_db(postgres_databases: PostgresDatabases) -> AsyncIterator[str]:
    name = await postgres_databases.create(migrated=False)
    url = postgres_databases.url(name)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, note text)")
    finally:
        await connection.close()
    try:
        yield url
    finally:
        await postgres_databases.drop(name)


def runs(service: Served) -> list[dict[str, object]]:
    """The service's runs; none while it is too busy to answer (the caller waits on)."""
    try:
        response = httpx.get(f"{service.url}/api/runs", params={"limit": 10_000}, timeout=30)
    except httpx.HTTPError:
        return []
    return list(response.json())


def run_count(service: Served) -> int:
    return len(runs(service))


async def test_rows_inserted_across_a_sigkill_each_start_exactly_one_run(
    store_url: str, table_db: str, tmp_path: Path, serve: StartServe
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "orders.yaml").write_text(PIPELINE.format(url=table_db))
    (folder / "steps.py").write_text(STEPS)
    db = await asyncpg.connect(table_db)
    try:
        # serve's output goes to files: a pipe nobody reads would block it after a few runs.
        first = serve(folder, "--store", store_url)
        await wait_for(first.healthy, timeout=30, message="serve to be healthy")
        await db.execute("INSERT INTO orders (note) VALUES ('warm-up')")
        await wait_for(lambda: run_count(first) == 1, timeout=30, message="the warm-up run")

        inserted = 1
        at_kill = 0

        async def insert_rows() -> None:
            # One row per transaction, as an application writes them: many commits in flight.
            nonlocal inserted
            for n in range(ROWS - 1):
                await db.execute("INSERT INTO orders (note) VALUES ($1)", f"row-{n}")
                inserted += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(insert_rows)
            await wait_for(
                lambda: run_count(first) >= KILL_AFTER_RUNS,
                timeout=60,
                message=f"{KILL_AFTER_RUNS} runs before the kill",
            )
            at_kill = inserted
            os.killpg(first.process.pid, signal.SIGKILL)
            assert first.process.wait() == -signal.SIGKILL
        assert at_kill < ROWS, "the rows were all in before the kill: nothing was proven"

        restarted = serve(folder, "--store", store_url)
        await wait_for(restarted.healthy, timeout=30, message="the restarted serve")

        def all_final() -> bool:
            found = runs(restarted)
            return len(found) >= ROWS and all(
                r["status"] in ("succeeded", "failed", "cancelled") for r in found
            )

        await wait_for(all_final, timeout=120, message=f"{ROWS} finished runs after the restart")
        ids = [row["id"] for row in await db.fetch("SELECT id FROM orders")]
        # Killed, not stopped: what is checked is in the store, and every run is final.
        os.killpg(restarted.process.pid, signal.SIGKILL)
        restarted.process.wait()
        assert "Traceback" not in restarted.err()
    finally:
        await db.close()

    store = open_store(store_url)
    await store.open()
    try:
        stored = await store.list_runs(pipeline=None, limit=10_000, before=None)
        per_row = Counter(run.params["id"] for run in stored)
        assert len(ids) == ROWS
        assert sorted(per_row) == sorted(ids)
        assert set(per_row.values()) == {1}, [k for k, v in per_row.items() if v > 1]
        assert {run.status for run in stored} == {"succeeded"}
        per_event = Counter(event_id for run in stored for event_id in run.event_ids)
        assert set(per_event.values()) == {1}
    finally:
        await store.close()
