"""The SQLite store alone: task transitions/s (``save_tasks``) and events/s (``ingest``)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from bench.measure import Figure
from bench.workspace import Workspace
from reactor.events import Event
from reactor.store import AttemptRecord, SqliteStore, Store, TaskRecord

__all__ = ["store_throughput"]

Report = Callable[[str], None]
WRITERS = 8
TARGET_TRANSITIONS = 2000.0


def _quiet(_line: str) -> None:
    return None


async def _rate(count: int, writers: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Operations per second: ``count`` calls of ``one(i)`` spread over ``writers`` coroutines."""

    async def writer(start: int) -> None:
        for i in range(start, count, writers):
            await one(i)

    before = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return count / (time.perf_counter() - before)


def _transition(tasks: list[TaskRecord], attempts: list[AttemptRecord], i: int) -> None:
    """Move task ``i % len(tasks)`` one step: pending -> running -> succeeded -> running ..."""
    task, attempt = tasks[i % len(tasks)], attempts[i % len(attempts)]
    now = datetime.now(UTC)
    task.status = "succeeded" if task.status == "running" else "running"
    attempt.status = task.status
    attempt.heartbeat_at = now
    if task.status == "running":
        task.attempts += 1
        task.started_at = now
    else:
        task.ended_at = now
        attempt.ended_at = now


async def measure(
    store: Store, operations: int, report: Report
) -> tuple[float, float, float, float]:
    """Transitions/s (1 and 8 writers), then events ingested/s (1 and 8 writers)."""
    now = datetime.now(UTC)
    tasks = [TaskRecord(f"run{i // 10}", f"task{i % 10}") for i in range(200)]
    attempts = [AttemptRecord(t.run_id, t.task_id, 1, "pending", "bench", now, now) for t in tasks]

    async def transition(i: int) -> None:
        _transition(tasks, attempts, i)
        slot = i % len(tasks)
        await store.save_tasks([tasks[slot]], [attempts[slot]])

    async def ingest(i: int) -> None:
        event = Event("bench.ingest", "bench", {"i": i, "path": f"/data/{i}.csv"})
        await store.ingest(event, datetime.now(UTC))

    sequential = await _rate(operations, 1, transition)
    report(f"  save_tasks sequential: {sequential:,.0f}/s")
    concurrent = await _rate(operations, WRITERS, transition)
    report(f"  save_tasks {WRITERS} writers: {concurrent:,.0f}/s")
    ingested = await _rate(operations, 1, ingest)
    ingested_concurrent = await _rate(operations, WRITERS, ingest)
    report(f"  ingest {WRITERS} writers: {ingested_concurrent:,.0f}/s")
    return sequential, concurrent, ingested, ingested_concurrent


async def store_throughput(operations: int = 4000, report: Report = _quiet) -> list[Figure]:
    """Task state transitions/s (sequential, 8 writers) and events ingested/s, SQLite store."""
    with Workspace() as ws:
        store = SqliteStore(ws.database)
        await store.open()
        try:
            sequential, concurrent, ingested, ingested_concurrent = await measure(
                store, operations, report
            )
        finally:
            await store.close()
        floor = await _commit_floor(ws, operations, _save_task_sql)
        ingest_floor = await _commit_floor(ws, operations, _insert_event_sql)
    return [
        Figure(
            "store SQLite",
            "task transitions/s, sequential",
            sequential,
            "/s",
            floor,
            TARGET_TRANSITIONS,
            better="higher",
            note="save_tasks([task], [attempt]) awaited one at a time; floor: the same two"
            " upserts committed per call with sqlite3 in asyncio.to_thread",
        ),
        Figure(
            "store SQLite",
            f"task transitions/s, {WRITERS} writers",
            concurrent,
            "/s",
            floor,
            TARGET_TRANSITIONS,
            better="higher",
            note="group commit: whatever is queued when the writer thread wakes is one commit",
        ),
        Figure(
            "store SQLite",
            "events ingested/s, sequential",
            ingested,
            "/s",
            ingest_floor,
            better="higher",
            note="ingest(event) awaited one at a time; floor: one insert of the event's JSON"
            " committed per call with sqlite3 in asyncio.to_thread",
        ),
        Figure(
            "store SQLite",
            f"events ingested/s, {WRITERS} writers",
            ingested_concurrent,
            "/s",
            ingest_floor,
            better="higher",
        ),
    ]


_FLOOR_SCHEMA = (
    "CREATE TABLE task_runs (run_id TEXT, task_id TEXT, status TEXT, attempts INTEGER,"
    " PRIMARY KEY (run_id, task_id))",
    "CREATE TABLE task_attempts (run_id TEXT, task_id TEXT, attempt INTEGER, status TEXT,"
    " heartbeat_at TEXT, PRIMARY KEY (run_id, task_id, attempt))",
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT, source TEXT, body TEXT,"
    " UNIQUE (source, id))",
)


def _save_task_sql(conn: sqlite3.Connection, i: int) -> None:
    key = (f"run{i % 200 // 10}", f"task{i % 10}")
    status = "running" if i % 2 else "succeeded"
    conn.execute(
        "INSERT INTO task_runs VALUES (?,?,?,1) ON CONFLICT (run_id, task_id)"
        " DO UPDATE SET status = excluded.status",
        (*key, status),
    )
    conn.execute(
        "INSERT INTO task_attempts VALUES (?,?,1,?,?) ON CONFLICT (run_id, task_id, attempt)"
        " DO UPDATE SET status = excluded.status, heartbeat_at = excluded.heartbeat_at",
        (*key, status, datetime.now(UTC).isoformat()),
    )


def _insert_event_sql(conn: sqlite3.Connection, i: int) -> None:
    event = Event("bench.ingest", "bench", {"i": i, "path": f"/data/{i}.csv"})
    conn.execute(
        "INSERT INTO events (id, source, body) VALUES (?,?,?) ON CONFLICT (source, id) DO NOTHING",
        (event.id, event.source, event.to_json()),
    )


async def _commit_floor(
    ws: Workspace, operations: int, work: Callable[[sqlite3.Connection, int], None]
) -> float:
    """Plain sqlite3 in a thread, one commit per call: the cost a store call starts from."""
    conn = sqlite3.connect(ws.root / "floor.db", isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in _FLOOR_SCHEMA:
            conn.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))

        def save(i: int) -> None:
            conn.execute("BEGIN")
            work(conn, i)
            conn.execute("COMMIT")

        async def one(i: int) -> None:
            await asyncio.to_thread(save, i)

        return await _rate(operations, 1, one)
    finally:
        conn.close()
