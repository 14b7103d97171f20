"""The Store contract, run on every store: SQLite and PostgreSQL must behave the same."""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from pg import PostgresDatabases

from reactor.errors import StoreError
from reactor.events import Event
from reactor.store import (
    AttemptRecord,
    LogLine,
    PostgresStore,
    RunRecord,
    SqliteStore,
    Store,
    TaskRecord,
    open_store,
)
from reactor.store.base import OutcomeToRecord
from reactor.store.migrations import LATEST
from reactor.store.records import ProcessRecord

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(n: int = 1, *, source: str = "tests", **kwargs: Any) -> Event:
    return Event(type="order.created", source=source, id=f"e{n}", time=at(n), **kwargs)


def run(n: int, *, pipeline: str = "orders", key: str | None = None, **kwargs: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "id": f"run{n}",
        "run_key": key or f"key{n}",
        "pipeline": pipeline,
        "version": "v1",
        "status": "queued",
        "params": {"n": n},
        "trigger": f"{pipeline}/event",
        "event_ids": [f"e{n}"],
        "created_at": at(n),
    }
    fields.update(kwargs)
    return RunRecord(**fields)


def attempt(task_id: str, number: int = 1, **kwargs: Any) -> AttemptRecord:
    fields: dict[str, Any] = {
        "run_id": "run1",
        "task_id": task_id,
        "attempt": number,
        "status": "running",
        "owner": "me",
        "started_at": at(10 + number),
        "heartbeat_at": at(10 + number),
    }
    fields.update(kwargs)
    return AttemptRecord(**fields)


async def execute_sql(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the store's database behind its back (to corrupt or inspect it)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            rows = conn.execute(sql).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    pg = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await pg.fetch(sql)]
    finally:
        await pg.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Events


async def test_ingest_stores_a_new_event_once(store: Store) -> None:
    original = event(1, data={"amount": 12.5, "items": ["a"]}, subject="o-1")
    original = replace(original, extensions={"region": "eu"})

    assert await store.ingest(original, at(100)) == ("e1", True)
    assert await store.ingest(original, at(200)) == ("e1", False)
    assert await store.ingest(replace(original, data={"changed": True}), at(300)) == ("e1", False)

    stored = await store.get_event("tests", "e1")
    assert stored is not None
    assert stored.event == original
    assert stored.received_at == at(100)
    assert stored.outcome is None
    assert isinstance(stored.seq, int)


async def test_the_same_id_from_another_source_is_another_event(store: Store) -> None:
    assert await store.ingest(event(1, source="a"), at(1)) == ("e1", True)
    assert await store.ingest(event(1, source="b", data=2), at(2)) == ("e1", True)

    a = await store.get_event("a", "e1")
    b = await store.get_event("b", "e1")
    assert a is not None and b is not None
    assert (a.event.source, b.event.source, b.event.data) == ("a", "b", 2)
    found = await store.find_event("e1")
    assert found is not None and found.event.source == "a"  # the first one stored


async def test_unknown_events_are_none(store: Store) -> None:
    await store.ingest(event(1), at(1))
    assert await store.get_event("tests", "nope") is None
    assert await store.get_event("elsewhere", "e1") is None
    assert await store.find_event("nope") is None


async def test_unevaluated_events_come_oldest_first_until_their_outcome_is_recorded(
    store: Store,
) -> None:
    for n in (3, 1, 2):
        await store.ingest(event(n), at(n))

    pending = await store.unevaluated_events(10)
    assert [p.event.id for p in pending] == ["e3", "e1", "e2"]
    assert [p.event.id for p in await store.unevaluated_events(2)] == ["e3", "e1"]
    assert pending[0].seq < pending[1].seq < pending[2].seq

    decisions = [{"trigger": "orders/event", "fired": False, "reason": "no match", "at": at(5)}]
    assert await store.record_outcome(event(1), decisions, [], at(6)) == []

    assert [p.event.id for p in await store.unevaluated_events(10)] == ["e3", "e2"]
    stored = await store.get_event("tests", "e1")
    assert stored is not None
    # Values JSON cannot hold are kept as their text, as str() writes them.
    assert stored.outcome == [
        {"trigger": "orders/event", "fired": False, "reason": "no match", "at": str(at(5))}
    ]


async def test_record_outcome_creates_runs_and_marks_the_event_evaluated(store: Store) -> None:
    await store.ingest(event(1), at(1))
    first, second = run(1), run(2, pipeline="invoices")

    admitted = await store.record_outcome(
        event(1), [{"fired": True, "run_id": "run1"}], [first, second], at(3)
    )

    assert [(a.run.id, a.new) for a in admitted] == [("run1", True), ("run2", True)]
    assert admitted[0].run.seq is not None and admitted[1].run.seq is not None
    assert admitted[0].run.seq < admitted[1].run.seq
    assert await store.get_run("run1") == admitted[0].run
    assert await store.get_run("run2") == admitted[1].run
    assert await store.unevaluated_events(10) == []
    stored = await store.get_event("tests", "e1")
    assert stored is not None and stored.outcome == [{"fired": True, "run_id": "run1"}]


async def test_record_outcomes_records_each_event_and_its_runs(store: Store) -> None:
    for n in (1, 2, 3):
        await store.ingest(event(n), at(n))
    batch = [
        OutcomeToRecord(event(1), [{"fired": True}], [run(1)]),
        OutcomeToRecord(event(2), [{"fired": False}], []),
        # The same run key as the first: the run exists already, nothing new.
        OutcomeToRecord(event(3), [{"fired": True}], [run(3, key=run(1).run_key)]),
    ]

    results = await store.record_outcomes(batch, at(4))

    first, second, third = results
    assert not isinstance(first, Exception) and not isinstance(third, Exception)
    assert [(a.run.id, a.new) for a in first] == [("run1", True)]
    assert second == []
    assert [(a.run.id, a.new) for a in third] == [("run1", False)]
    assert await store.unevaluated_events(10) == []
    stored = await store.get_event("tests", "e2")
    assert stored is not None and stored.outcome == [{"fired": False}]


async def test_record_outcome_is_idempotent_by_run_key(store: Store) -> None:
    await store.ingest(event(1), at(1))
    await store.ingest(event(2), at(2))
    [created] = await store.record_outcome(event(1), [], [run(1, key="k")], at(3))

    again = await store.record_outcome(
        event(2), [], [run(2, key="k", params={"other": 1}), run(3, key="k3")], at(4)
    )

    assert [a.new for a in again] == [False, True]
    existing = again[0].run
    assert existing == created.run
    assert (existing.id, existing.params, existing.seq) == ("run1", {"n": 1}, created.run.seq)
    assert await store.get_run("run2") is None
    assert await store.unevaluated_events(10) == []


async def test_the_same_run_key_twice_in_one_outcome_creates_one_run(store: Store) -> None:
    await store.ingest(event(1), at(1))

    admitted = await store.record_outcome(
        event(1), [], [run(1, key="k"), run(2, key="k"), run(3)], at(2)
    )

    assert [(a.run.id, a.new) for a in admitted] == [
        ("run1", True),
        ("run1", False),
        ("run3", True),
    ]
    assert admitted[1].run == admitted[0].run
    assert await store.get_run("run2") is None


async def test_runs_racing_for_one_key_from_two_connections_admit_one(
    store: Store, store_url: str
) -> None:
    other = open_store(store_url)
    await other.open()
    try:
        results: list[tuple[str, bool]] = []

        async def admit(target: Store, n: int) -> None:
            await target.ingest(event(n), at(n))
            [admitted] = await target.record_outcome(event(n), [], [run(n, key="shared")], at(n))
            results.append((admitted.run.id, admitted.new))

        async with anyio.create_task_group() as tg:
            for n in range(1, 21):
                tg.start_soon(admit, store if n % 2 else other, n)
    finally:
        await other.close()

    winners = [run_id for run_id, new in results if new]
    assert len(winners) == 1
    assert {run_id for run_id, _ in results} == set(winners)
    assert len(await store.list_runs(pipeline=None, limit=100, before=None)) == 1


# Pipelines


async def test_pipeline_versions_are_kept_once(store: Store) -> None:
    await store.save_pipeline_version("orders", "v1", "orders.yaml", "name: orders\n", at(1))
    await store.save_pipeline_version("orders", "v1", "moved.yaml", "changed", at(2))
    await store.save_pipeline_version("orders", "v2", "orders.yaml", "name: orders # 2\n", at(3))

    assert await store.pipeline_version("orders", "v1") == "name: orders\n"
    assert await store.pipeline_version("orders", "v2") == "name: orders # 2\n"
    assert await store.pipeline_version("orders", "v3") is None
    assert await store.pipeline_version("invoices", "v1") is None


# Runs


async def test_create_run_round_trips_every_field(store: Store) -> None:
    amsterdam = timezone(timedelta(hours=2))
    original = run(
        1,
        params={"path": "/in/a.csv", "nested": {"list": [1, 2.5, None, True]}, "text": "é"},
        trigger=None,
        event_ids=["e1", "e2"],
        created_at=datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=amsterdam),
        status="running",
        started_at=datetime(2026, 3, 1, 14, 0, 1, tzinfo=amsterdam),
        owner="process-1",
    )

    admitted = await store.create_run(original)

    assert admitted.new
    assert admitted.run.seq is not None
    stored = await store.get_run("run1")
    assert stored == admitted.run
    assert stored is not None
    assert stored.created_at.utcoffset() == timedelta(hours=2)
    assert await store.get_run("nope") is None


async def test_create_run_with_a_known_key_returns_the_existing_run(store: Store) -> None:
    first = await store.create_run(run(1, key="k"))
    second = await store.create_run(run(2, key="k", pipeline="other"))

    assert (first.new, second.new) == (True, False)
    assert second.run == first.run
    assert await store.get_run("run2") is None


async def test_timestamps_are_stored_as_iso_8601_text(store: Store, store_url: str) -> None:
    created = datetime(2026, 3, 1, 12, 0, 0, 500, tzinfo=timezone(timedelta(hours=-5)))
    await store.create_run(run(1, created_at=created))

    rows = await execute_sql(store_url, "SELECT created_at, started_at FROM runs")

    assert rows == [("2026-03-01T12:00:00.000500-05:00", None)]


async def test_list_runs_is_newest_first_and_pages_with_a_cursor(store: Store) -> None:
    for n in range(1, 8):
        await store.create_run(run(n, pipeline="orders" if n % 2 else "invoices"))

    everything = await store.list_runs(pipeline=None, limit=100, before=None)
    assert [r.id for r in everything] == [f"run{n}" for n in range(7, 0, -1)]

    pages: list[list[str]] = []
    cursor: int | None = None
    while page := await store.list_runs(pipeline=None, limit=3, before=cursor):
        pages.append([r.id for r in page])
        cursor = page[-1].seq
    assert pages == [["run7", "run6", "run5"], ["run4", "run3", "run2"], ["run1"]]

    orders = await store.list_runs(pipeline="orders", limit=2, before=None)
    assert [r.id for r in orders] == ["run7", "run5"]
    older = await store.list_runs(pipeline="orders", limit=2, before=orders[-1].seq)
    assert [r.id for r in older] == ["run3", "run1"]
    assert await store.list_runs(pipeline="orders", limit=2, before=older[-1].seq) == []
    assert await store.list_runs(pipeline="unknown", limit=10, before=None) == []


async def test_runs_with_status_filters_by_status_and_pipeline_oldest_first(store: Store) -> None:
    await store.create_run(run(1))
    await store.create_run(run(2, pipeline="invoices"))
    await store.create_run(run(3, status="running"))
    await store.create_run(run(4))

    assert [r.id for r in await store.runs_with_status("queued")] == ["run1", "run2", "run4"]
    assert [r.id for r in await store.runs_with_status("queued", "orders")] == ["run1", "run4"]
    assert [r.id for r in await store.runs_with_status("running")] == ["run3"]
    assert await store.runs_with_status("failed") == []


async def test_runs_without_event_are_final_runs_whose_end_event_is_missing(
    store: Store,
) -> None:
    for n, status in enumerate(["succeeded", "failed", "cancelled", "running", "queued"], 1):
        await store.create_run(run(n, status=status))
    await store.create_run(run(6, pipeline="invoices", status="succeeded"))
    await store.create_run(run(7, status="succeeded"))
    prefix = "reactor/pipelines/"
    assert [r.id for r in await store.runs_without_event(prefix, 10)] == [
        "run1",
        "run2",
        "run3",
        "run6",
        "run7",
    ]
    assert [r.id for r in await store.runs_without_event(prefix, 2)] == ["run1", "run2"]

    await store.ingest(Event("reactor.run.succeeded", f"{prefix}orders", id="run1"), at(10))
    await store.ingest(Event("reactor.run.failed", f"{prefix}orders", id="run2"), at(10))
    # The same id from another source, or another pipeline's source, is not the run's event.
    await store.ingest(Event("reactor.run.cancelled", "elsewhere", id="run3"), at(10))
    await store.ingest(Event("reactor.run.succeeded", f"{prefix}orders", id="run6"), at(10))
    assert [r.id for r in await store.runs_without_event(prefix, 10)] == ["run3", "run6", "run7"]
    [found, *_] = await store.runs_without_event(prefix, 10)
    assert (found.status, found.params, found.pipeline) == ("cancelled", {"n": 3}, "orders")


async def test_set_run_status_sets_each_timestamp_once_and_keeps_the_reason(store: Store) -> None:
    await store.create_run(run(1))

    await store.set_run_status("run1", "running", at=at(10), owner="p1")
    await store.set_run_status("run1", "running", at=at(11))
    stored = await store.get_run("run1")
    assert stored is not None
    assert (stored.status, stored.started_at, stored.ended_at) == ("running", at(10), None)
    assert stored.owner == "p1"

    await store.set_run_status("run1", "failed", at=at(20), reason="task load failed")
    await store.set_run_status("run1", "failed", at=at(30))
    stored = await store.get_run("run1")
    assert stored is not None
    assert (stored.status, stored.started_at, stored.ended_at) == ("failed", at(10), at(20))
    assert (stored.reason, stored.owner, stored.created_at) == ("task load failed", "p1", at(1))

    await store.set_run_status("run1", "queued", at=at(40))
    stored = await store.get_run("run1")
    assert stored is not None and (stored.status, stored.created_at) == ("queued", at(1))


async def test_claim_run_takes_a_run_over_only_from_its_owner(store: Store) -> None:
    await store.create_run(run(1))

    assert await store.claim_run("run1", None, "p1")
    assert not await store.claim_run("run1", None, "p2")
    assert not await store.claim_run("run1", "p3", "p2")
    assert await store.claim_run("run1", "p1", "p2")
    assert not await store.claim_run("nope", None, "p1")
    stored = await store.get_run("run1")
    assert stored is not None and stored.owner == "p2"


# Tasks


async def test_save_tasks_upserts_tasks_and_attempts(store: Store) -> None:
    await store.create_run(run(1))
    await store.save_tasks([TaskRecord("run1", "extract"), TaskRecord("run1", "load")])

    running = TaskRecord("run1", "extract", "running", 1, started_at=at(11))
    await store.save_tasks([running], [attempt("extract", host="box", pid=42)])
    done = replace(running, status="succeeded", ended_at=at(12), output={"rows": 3, "at": at(1)})
    finished = attempt(
        "extract", status="succeeded", owner="someone else", heartbeat_at=at(12), ended_at=at(12)
    )
    await store.save_tasks([done], [finished])

    tasks = await store.task_runs("run1")
    assert [(t.task_id, t.status, t.attempts) for t in tasks] == [
        ("extract", "succeeded", 1),
        ("load", "pending", 0),
    ]
    assert tasks[0].output == {"rows": 3, "at": str(at(1))}
    assert (tasks[0].started_at, tasks[0].ended_at, tasks[0].error) == (at(11), at(12), None)
    assert (tasks[1].started_at, tasks[1].ended_at, tasks[1].output) == (None, None, None)
    # An attempt's owner and start are its own; host and pid stay once known.
    assert await store.attempts("run1") == [
        attempt(
            "extract",
            status="succeeded",
            heartbeat_at=at(12),
            ended_at=at(12),
            host="box",
            pid=42,
        )
    ]
    assert await store.task_runs("nope") == []
    assert await store.attempts("nope") == []


async def test_a_failed_attempt_and_its_retry_are_both_kept(store: Store) -> None:
    await store.create_run(run(1))
    first = attempt("load", 1, status="failed", ended_at=at(12), error="boom")
    second = attempt("load", 2, status="succeeded", ended_at=at(13))
    task = TaskRecord("run1", "load", "failed", 1, at(11), None, None, "boom")

    await store.save_tasks([task], [first])
    await store.save_tasks([replace(task, status="succeeded", attempts=2, error=None)], [second])

    assert [(a.attempt, a.status, a.error) for a in await store.attempts("run1")] == [
        (1, "failed", "boom"),
        (2, "succeeded", None),
    ]
    [stored] = await store.task_runs("run1")
    assert (stored.status, stored.attempts, stored.error) == ("succeeded", 2, None)


async def test_the_same_task_twice_in_one_call_ends_as_if_saved_in_turn(store: Store) -> None:
    await store.create_run(run(1))
    started = TaskRecord("run1", "a", "running", 1, started_at=at(11))

    await store.save_tasks(
        [started, replace(started, status="succeeded", ended_at=at(12), output=[1])],
        [
            attempt("a", host="box"),
            attempt(
                "a", status="succeeded", owner="other", started_at=at(99), ended_at=at(12), pid=5
            ),
        ],
    )

    [task] = await store.task_runs("run1")
    assert (task.status, task.ended_at, task.output) == ("succeeded", at(12), [1])
    assert await store.attempts("run1") == [
        attempt("a", status="succeeded", ended_at=at(12), host="box", pid=5)
    ]


async def test_task_runs_come_in_start_order_then_those_never_started(store: Store) -> None:
    await store.create_run(run(1))
    await store.save_tasks(
        [
            TaskRecord("run1", "a", "running", 1, started_at=at(3)),
            TaskRecord("run1", "b", "skipped"),
            TaskRecord("run1", "c", "running", 1, started_at=at(1)),
            TaskRecord("run1", "d", "running", 1, started_at=at(2)),
        ]
    )

    tasks = await store.task_runs("run1")

    assert [t.task_id for t in tasks] == ["c", "d", "a", "b"]


async def test_save_tasks_takes_many_rows_at_once(store: Store) -> None:
    await store.create_run(run(1))
    tasks = [TaskRecord("run1", f"t{i:03}", "running", 1, started_at=at(i)) for i in range(300)]
    attempts = [attempt(f"t{i:03}", started_at=at(i), heartbeat_at=at(i)) for i in range(300)]

    await store.save_tasks(tasks, attempts)
    await store.save_tasks([], [])

    assert await store.task_runs("run1") == tasks
    assert await store.attempts("run1") == attempts


async def test_heartbeat_touches_only_the_running_attempts_of_its_owner(store: Store) -> None:
    await store.create_run(run(1))
    await store.register_process(ProcessRecord("me", "box", 1, at(0), at(0)))
    await store.register_process(ProcessRecord("other", "box", 2, at(0), at(0)))
    await store.save_tasks(
        [],
        [
            attempt("mine"),
            attempt("done", status="succeeded", ended_at=at(12)),
            attempt("theirs", owner="other"),
        ],
    )

    await store.heartbeat("me", at(50))

    beats = {a.task_id: a.heartbeat_at for a in await store.attempts("run1")}
    assert beats == {"mine": at(50), "done": at(11), "theirs": at(11)}
    processes = {p.owner: p.heartbeat_at for p in await store.processes()}
    assert processes == {"me": at(50), "other": at(0)}


async def test_running_attempts_are_every_owners(store: Store) -> None:
    await store.create_run(run(1))
    await store.save_tasks(
        [],
        [
            attempt("a", owner="p1"),
            attempt("b", status="failed", ended_at=at(12)),
            attempt("c", owner="p2", host="box", pid=7),
        ],
    )

    running = await store.running_attempts()

    assert sorted((a.task_id, a.owner, a.pid) for a in running) == [
        ("a", "p1", None),
        ("c", "p2", 7),
    ]


async def test_register_process_again_only_refreshes_its_heartbeat(store: Store) -> None:
    await store.register_process(ProcessRecord("p1", "box", 10, at(0), at(0)))
    await store.register_process(ProcessRecord("p1", "other-box", 11, at(5), at(6)))

    assert await store.processes() == [ProcessRecord("p1", "box", 10, at(0), at(6))]


# Logs


async def test_logs_are_appended_and_paged_by_seq(store: Store) -> None:
    lines = [LogLine("run1", "extract", 1, "stdout", at(i), f"line {i} ✓") for i in range(25)]
    await store.append_logs(lines[:10])
    await store.append_logs([LogLine("run2", "x", 1, "stderr", at(0), "elsewhere")])
    await store.append_logs(lines[10:])
    await store.append_logs([])

    pages: list[list[LogLine]] = []
    after = 0
    while page := await store.logs("run1", after=after, limit=10):
        pages.append(page)
        after = page[-1].seq or 0
    assert [len(p) for p in pages] == [10, 10, 5]
    read = [line for page in pages for line in page]
    assert [replace(x, seq=None) for x in read] == lines
    seqs = [x.seq for x in read]
    assert seqs == sorted(seqs) and len(set(seqs)) == 25
    [other] = await store.logs("run2", after=0, limit=10)
    assert (other.stream, other.line) == ("stderr", "elsewhere")


# Schema and lifecycle


async def test_reopening_a_database_keeps_its_data_and_does_not_migrate_again(
    store: Store, store_url: str
) -> None:
    await store.create_run(run(1))
    before = await execute_sql(store_url, "SELECT version, applied_at FROM schema_version")

    again = open_store(store_url)
    await again.open()
    try:
        assert await again.get_run("run1") == await store.get_run("run1")
    finally:
        await again.close()

    after = await execute_sql(store_url, "SELECT version, applied_at FROM schema_version")
    assert after == before
    assert [version for version, _ in after] == list(range(1, LATEST + 1))


async def test_a_database_from_a_newer_reactor_is_refused(store: Store, store_url: str) -> None:
    await execute_sql(
        store_url, f"INSERT INTO schema_version VALUES ({LATEST + 1}, '2099-01-01 00:00:00')"
    )
    newer = open_store(store_url)

    with pytest.raises(StoreError) as caught:
        await newer.open()

    where = store_url.removeprefix("sqlite:///")
    assert str(caught.value) == (
        f"the database {where} has schema version {LATEST + 1}, newer than this"
        f" Reactor's {LATEST}; upgrade Reactor"
    )
    # A refused store is closed again and can be retried once the database is fixed.
    await execute_sql(store_url, f"DELETE FROM schema_version WHERE version = {LATEST + 1}")
    await newer.open()
    try:
        assert await newer.get_run("nope") is None
    finally:
        await newer.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_processes_starting_at_once_migrate_a_new_database_once(
    kind: str, tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'new.db'}"
    else:
        url = postgres_databases.url(await postgres_databases.create(migrated=False))
    stores = [open_store(url) for _ in range(4)]
    try:
        async with anyio.create_task_group() as tg:
            for opening in stores:
                tg.start_soon(opening.open)
        assert await stores[0].get_run("nope") is None
        versions = await execute_sql(url, "SELECT version FROM schema_version ORDER BY version")
        assert versions == [(v,) for v in range(1, LATEST + 1)]
    finally:
        for opened in stores:
            await opened.close()
        if kind == "postgres":
            await postgres_databases.drop(url.rsplit("/", 1)[1])


async def test_open_and_close_are_counted(store: Store) -> None:
    await store.open()
    await store.close()
    assert await store.get_run("nope") is None  # still open: opened twice, closed once


async def test_a_store_that_is_not_open_says_so(store_url: str) -> None:
    closed = open_store(store_url)

    with pytest.raises(StoreError, match=r"^the store .+ is not open$"):
        await closed.get_run("run1")


async def test_a_driver_error_is_a_store_error_naming_what_failed(
    store: Store, store_url: str
) -> None:
    await execute_sql(store_url, "DROP TABLE runs")

    with pytest.raises(StoreError) as caught:
        await store.list_runs(pipeline=None, limit=10, before=None)

    if isinstance(store, SqliteStore):
        assert str(caught.value) == "SQLite: no such table: runs"
    else:
        assert str(caught.value) == (
            f"PostgreSQL at {store_url}: cannot list runs:"
            ' UndefinedTableError: relation "runs" does not exist'
        )
        assert isinstance(caught.value.__cause__, asyncpg.UndefinedTableError)


# PostgreSQL connections


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    port = free_port()
    store = PostgresStore(f"postgresql://reactor:s3cret@127.0.0.1:{port}/state?password=s3cret")

    with pytest.raises(StoreError) as caught:
        await store.open()

    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to PostgreSQL at postgresql://reactor@127.0.0.1:{port}/state: "
    )
    assert "s3cret" not in message
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(StoreError, match="is not open"):
        await store.get_run("run1")


async def test_a_missing_database_is_a_store_error(
    postgres_databases: PostgresDatabases,
) -> None:
    url = postgres_databases.url(f"{postgres_databases.prefix}_missing")
    store = PostgresStore(url)

    with pytest.raises(StoreError) as caught:
        await store.open()

    assert str(caught.value) == (
        f"cannot connect to PostgreSQL at {url}: InvalidCatalogNameError:"
        f' database "{postgres_databases.prefix}_missing" does not exist'
    )


def test_open_store_picks_the_store_by_url_scheme(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:///{tmp_path / 'a.db'}"), SqliteStore)
    for url in ("postgresql://u@h:5432/db", "postgres://u:pw@h/db"):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
    assert PostgresStore("postgres://u:pw@h/db").url == "postgres://u@h/db"

    with pytest.raises(StoreError) as caught:
        open_store("mysql://root:hunter2@db/state")
    assert str(caught.value) == (
        "unsupported store URL 'mysql://root@db/state' (scheme 'mysql');"
        " use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )
