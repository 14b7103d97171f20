"""``on: table`` against the machine's real PostgreSQL, each test on a database of its own."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from helpers import wait_for
from pg import PostgresDatabases

from reactor.clock import FakeClock
from reactor.events import Event
from reactor.service import Reactor
from reactor.store import RunRecord, Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ORDERS = """
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer text NOT NULL,
    amount numeric(10, 2) NOT NULL DEFAULT 0,
    details jsonb,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orders_changed', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER orders_notify AFTER INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_notify();
"""

PIPELINE = """
name: orders
params:
  id: {{type: integer}}
  customer: {{type: string}}
triggers:
  - on: table
    connection: {url}
{trigger}    params:
      id: "{{{{ event.data.row.id }}}}"
      customer: "{{{{ event.data.row.customer }}}}"
tasks:
  - id: show
    shell: "echo {{{{ params.customer }}}}"
"""

KEY = "orders/table"


@pytest.fixture
async def table_db(postgres_databases: PostgresDatabases) -> AsyncIterator[str]:
    """A database of its own with the ``orders`` table (and a NOTIFY on each change)."""
    async with postgres_databases.scratch(ORDERS) as url:
        yield url


@pytest.fixture
async def db(table_db: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(table_db)
    try:
        yield connection
    finally:
        await connection.close()


def write_orders(write_pipeline: Any, url: str, trigger: str, pipeline: str = PIPELINE) -> None:
    lines = textwrap.indent(textwrap.dedent(trigger).strip() + "\n", "    ")
    write_pipeline("orders.yaml", pipeline.format(url=url, trigger=lines))


async def insert(db: asyncpg.Connection, *customers: str) -> list[int]:
    rows = await db.fetch(
        "INSERT INTO orders (customer, amount) SELECT c, 12.5 FROM unnest($1::text[]) AS c"
        " RETURNING id",
        list(customers),
    )
    return [row["id"] for row in rows]


async def all_runs(store: Store) -> list[RunRecord]:
    return await store.list_runs(pipeline=None, limit=10_000, before=None)


async def wait_runs(store: Store, count: int, *, timeout: float = 15.0) -> list[RunRecord]:
    """Wait until ``count`` runs exist and are final (more than ``count`` fails the test)."""

    async def done() -> bool:
        runs = await all_runs(store)
        assert len(runs) <= count, [r.params for r in runs]
        return len(runs) == count and all(
            r.status in ("succeeded", "failed", "cancelled") for r in runs
        )

    await wait_for(done, timeout=timeout, message=f"{count} finished runs")
    return await all_runs(store)


async def watching(reactor: Reactor, key: str = KEY) -> None:
    await wait_for(
        lambda: key in reactor.sensor_health() and reactor.sensor_health()[key].state == "watching",
        message=f"sensor {key} to watch",
    )


async def failing(reactor: Reactor, text: str, key: str = KEY) -> str:
    def says() -> bool:
        health = reactor.sensor_health().get(key)
        return health is not None and health.state == "failing" and text in health.message

    await wait_for(says, message=f"sensor {key} to fail with {text!r}")
    return reactor.sensor_health()[key].message


def customers(runs: list[RunRecord]) -> list[str]:
    return sorted(r.params["customer"] for r in runs)


# Polling by a watermark


async def test_each_row_starts_one_run_with_params_from_the_row(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    write_orders(write_pipeline, table_db, "table: public.orders\nwatermark: id\ninterval: 50ms")
    async with start_reactor() as reactor:
        await watching(reactor)
        ids = await insert(db, "ada", "bob")
        await db.execute(
            "INSERT INTO orders (customer, amount, details) VALUES ('cy', 1234.56, $1)",
            json.dumps({"gift": True, "tags": ["x"]}),
        )
        runs = await wait_runs(store, 3)
        health = reactor.sensor_health()[KEY]

    assert customers(runs) == ["ada", "bob", "cy"]
    assert all(r.status == "succeeded" for r in runs), [r.reason for r in runs]
    assert sorted(r.params["id"] for r in runs) == [*ids, ids[-1] + 1]
    assert all(r.trigger == KEY for r in runs)
    cy = next(r for r in runs if r.params["customer"] == "cy")
    stored = await store.find_event(cy.event_ids[0])
    assert stored is not None
    event = stored.event
    assert event.type == "reactor.table.changed"
    assert event.source == f"reactor/sensors/{KEY}"
    assert event.subject == "public.orders"
    row = event.data["row"]
    assert event.data["table"] == "public.orders"
    assert row["amount"] == "1234.56"  # numeric: exact, as text
    assert row["details"] == {"gift": True, "tags": ["x"]}  # jsonb: the value itself
    assert row["updated_at"].endswith("+00:00")  # timestamptz: ISO 8601 with an offset
    assert health.events == 3
    assert health.cursor["watermark"] == ids[-1] + 1
    saved = await store.get_cursor(KEY)
    assert saved["watermark"] == ids[-1] + 1
    assert saved["table"] == "public.orders"


async def test_a_restart_goes_on_from_the_stored_cursor_and_repeats_no_row(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    write_orders(write_pipeline, table_db, "table: orders\nwatermark: updated_at\ninterval: 50ms")
    async with start_reactor() as reactor:
        await watching(reactor)
        await insert(db, "ada", "bob")
        await wait_runs(store, 2)
    await insert(db, "while-down")
    async with start_reactor() as reactor:
        await insert(db, "after")
        runs = await wait_runs(store, 4)
        # The overlap window was read again: those rows were duplicates, not runs.
        await insert(db, "marker")
        runs = await wait_runs(store, 5)
        health = reactor.sensor_health()[KEY]
    assert customers(runs) == ["ada", "after", "bob", "marker", "while-down"]
    assert health.events == 3
    assert health.duplicates == 2


async def test_from_latest_skips_the_rows_already_there_and_earliest_takes_them(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    await insert(db, "old-1", "old-2")
    write_orders(write_pipeline, table_db, "table: orders\nwatermark: id\ninterval: 50ms")
    async with start_reactor() as reactor:
        await watching(reactor)
        await insert(db, "new")
        runs = await wait_runs(store, 1)
    assert customers(runs) == ["new"]

    write_orders(
        write_pipeline,
        table_db,
        "id: everything\ntable: orders\nwatermark: id\ninterval: 50ms\nfrom: earliest",
    )
    async with start_reactor():
        runs = await wait_runs(store, 4)
    assert customers([r for r in runs if r.trigger == "orders/everything"]) == [
        "new",
        "old-1",
        "old-2",
    ]


async def test_per_batch_emits_the_new_rows_at_most_max_rows_at_a_time(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    await insert(db, "a", "b", "c", "d", "e")
    pipeline = """
name: orders
params:
  ids: {{type: list}}
triggers:
  - on: table
    connection: {url}
{trigger}    params:
      ids: "{{{{ event.data.rows | map(attribute='id') | list }}}}"
tasks:
  - id: show
    shell: "echo {{{{ params.ids }}}}"
"""
    trigger = (
        "table: orders\nwatermark: id\ninterval: 50ms\nper: batch\nmax_rows: 2\nfrom: earliest"
    )
    write_orders(write_pipeline, table_db, trigger, pipeline)
    async with start_reactor() as reactor:
        runs = await wait_runs(store, 3)
        assert sorted(r.params["ids"] for r in runs) == [[1, 2], [3, 4], [5]]
        assert {(await store.find_event(r.event_ids[0])).event.type for r in runs} == {  # type: ignore[union-attr]
            "reactor.table.batch"
        }
        assert reactor.sensor_health()[KEY].events == 3
    # Restarted: the rows read again in the overlap window are not in a second batch.
    async with start_reactor():
        await insert(db, "f")
        runs = await wait_runs(store, 4)
    assert sorted(r.params["ids"] for r in runs) == [[1, 2], [3, 4], [5], [6]]


async def test_a_row_committed_after_a_later_one_is_not_missed(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    write_orders(
        write_pipeline,
        table_db,
        "table: orders\nwatermark: updated_at\noverlap: 1m\ninterval: 50ms",
    )
    slow = await asyncpg.connect(table_db)
    try:
        async with start_reactor() as reactor:
            await watching(reactor)
            transaction = slow.transaction()
            await transaction.start()
            # Its updated_at is taken now, but nobody sees the row until it commits.
            await slow.execute("INSERT INTO orders (customer) VALUES ('early-but-slow')")
            await insert(db, "late-but-quick")
            runs = await wait_runs(store, 1)
            assert customers(runs) == ["late-but-quick"]
            cursor = reactor.sensor_health()[KEY].cursor["watermark"]
            await transaction.commit()
            early = await db.fetchval(
                "SELECT updated_at FROM orders WHERE customer = 'early-but-slow'"
            )
            late = await db.fetchval(
                "SELECT updated_at FROM orders WHERE customer = 'late-but-quick'"
            )
            assert early < late  # committed out of order: below the cursor already read
            runs = await wait_runs(store, 2)
            await insert(db, "marker")
            runs = await wait_runs(store, 3)
    finally:
        await slow.close()
    assert cursor == late.isoformat()
    assert customers(runs) == ["early-but-slow", "late-but-quick", "marker"]


async def test_an_updated_row_triggers_again_with_its_new_watermark(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    write_orders(write_pipeline, table_db, "table: orders\nwatermark: updated_at\ninterval: 50ms")
    async with start_reactor() as reactor:
        await watching(reactor)
        [order] = await insert(db, "ada")
        await wait_runs(store, 1)
        await db.execute(
            "UPDATE orders SET customer = 'ada-2', updated_at = clock_timestamp() WHERE id = $1",
            order,
        )
        runs = await wait_runs(store, 2)
    assert customers(runs) == ["ada", "ada-2"]
    assert {r.params["id"] for r in runs} == {order}


# NOTIFY


async def test_notify_alone_makes_each_payload_an_event(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    pipeline = """
name: orders
params:
  what: {{type: string}}
triggers:
  - on: table
    connection: {url}
{trigger}    params:
      what: "{{{{ event.data.kind if event.data is mapping else event.data }}}}"
tasks:
  - id: show
    shell: "echo {{{{ params.what }}}}"
"""
    write_orders(write_pipeline, table_db, "notify: jobs", pipeline)
    async with start_reactor() as reactor:
        await watching(reactor)
        await db.execute("""SELECT pg_notify('jobs', '{"kind": "json"}')""")
        await db.execute("SELECT pg_notify('jobs', 'plain text')")
        await db.execute("SELECT pg_notify('elsewhere', 'not ours')")
        runs = await wait_runs(store, 2)
        # Quiet for a while: the listening connection is checked and kept.
        assert reactor.sensor_health()[KEY].message == "listening on channel jobs"
    assert sorted(r.params["what"] for r in runs) == ["json", "plain text"]
    events = [await store.find_event(r.event_ids[0]) for r in runs]
    assert sorted(str(e.event.data) for e in events if e) == ["plain text", "{'kind': 'json'}"]
    assert {e.event.type for e in events if e} == {"reactor.table.notified"}
    assert {e.event.subject for e in events if e} == {"jobs"}


async def terminate_listener(db: asyncpg.Connection) -> int:
    return len(
        await db.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'reactor table sensor' AND datname = current_database()"
        )
    )


async def test_rows_sent_while_the_listener_was_cut_off_are_caught_up(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    # A poll interval of an hour on a fake clock: only NOTIFY and the reconnect read rows.
    write_orders(
        write_pipeline,
        table_db,
        "table: orders\nwatermark: id\nnotify: orders_changed\ninterval: 1h",
    )
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        await watching(reactor)
        await insert(db, "before")
        await wait_runs(store, 1)
        asleep = clock.sleepers
        assert await terminate_listener(db) == 1
        message = await failing(reactor, "lost the connection")
        # The sensor waits for its backoff on the fake clock: nothing reconnects until it moves.
        await wait_for(lambda: clock.sleepers == asleep, message="the sensor to back off")
        await insert(db, "while-cut-off-1", "while-cut-off-2")
        clock.advance(1.0)
        runs = await wait_runs(store, 3)
        await watching(reactor)
        await insert(db, "after")
        runs = await wait_runs(store, 4)
    assert message.endswith("; retrying in 1s")
    assert customers(runs) == ["after", "before", "while-cut-off-1", "while-cut-off-2"]


# A database that is not there


async def test_a_database_that_is_down_is_reported_and_retried_and_the_service_runs_on(
    write_pipeline, start_reactor, store: Store, postgres_databases: PostgresDatabases
) -> None:
    name = f"{postgres_databases.prefix}_later"
    url = postgres_databases.url(name)
    write_orders(write_pipeline, url, "table: orders\nwatermark: id\ninterval: 1h\nfrom: earliest")
    write_pipeline(
        "other.yaml",
        "name: other\ntriggers:\n  - on: event\n    type: ping\n"
        "tasks:\n  - id: a\n    shell: echo\n",
    )
    clock = FakeClock()
    admin = await asyncpg.connect(postgres_databases.url("postgres"))
    try:
        async with start_reactor(clock=clock) as reactor:
            message = await failing(reactor, "does not exist")
            assert message == (
                f'cannot connect to {url}: database "{name}" does not exist; retrying in 1s'
            )
            # Everything else goes on.
            published = await reactor.publish(Event("ping", "test"))
            assert len(published.run_ids) == 1

            await admin.execute(f'CREATE DATABASE "{name}"')
            db = await asyncpg.connect(url)
            try:
                await db.execute(ORDERS)
                await insert(db, "finally")
                clock.advance(1.0)
                await watching(reactor)
                runs = await wait_runs(store, 2)
            finally:
                await db.close()
            health = reactor.sensor_health()[KEY]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    assert "finally" in [r.params.get("customer") for r in runs]
    assert health.last_error is not None and "does not exist" in health.last_error


@pytest.mark.parametrize(
    ("url", "trigger", "expected"),
    [
        (
            "postgresql://postgres:hunter2@127.0.0.1:1/nowhere",
            "table: orders\nwatermark: id",
            "cannot connect to postgresql://postgres:***@127.0.0.1:1/nowhere:",
        ),
        (
            # A name in reactor.yaml: its URL is only read when the sensor starts.
            "warehouse",
            "table: orders\nwatermark: id",
            "cannot connect to postgresql://postgres:***@127.0.0.1:notaport/x: port could not"
            " be cast to integer value as 'notaport'",
        ),
        (
            "{db}",
            "table: public.nope\nwatermark: id",
            "table public.nope does not exist in database {name}",
        ),
        (
            "{db}",
            "table: orders\nwatermark: changed",
            "watermark column 'changed' is not a column of public.orders (columns: id,"
            " customer, amount, details, updated_at)",
        ),
        (
            "{db}",
            "table: orders\nwatermark: customer",
            "watermark column 'customer' of public.orders has type text; it must grow",
        ),
        (
            "{db}",
            "table: orders\nwatermark: id\noverlap: 30s",
            "overlap: '30s' is a duration, but watermark column 'id' of public.orders is a"
            " number (bigint)",
        ),
        (
            "{db}",
            "table: orders\nwatermark: id\nkey: [nope]",
            "key column 'nope' is not a column of public.orders",
        ),
    ],
)
async def test_what_is_wrong_shows_in_the_sensor_health(
    url: str,
    trigger: str,
    expected: str,
    write_pipeline,
    start_reactor,
    pipelines_dir,
    table_db: str,
) -> None:
    name = table_db.rsplit("/", 1)[1]
    (pipelines_dir / "reactor.yaml").write_text(
        "connections:\n  warehouse: postgresql://postgres:hunter2@127.0.0.1:notaport/x\n"
    )
    write_orders(write_pipeline, url.format(db=table_db), trigger + "\ninterval: 1h")
    async with start_reactor(clock=FakeClock()) as reactor:
        message = await failing(reactor, expected.format(name=name))
        assert reactor.sensor_health()[KEY].state == "failing"
    assert "hunter2" not in message


async def test_a_table_without_a_primary_key_needs_key(
    write_pipeline, start_reactor, store: Store, table_db: str, db: asyncpg.Connection
) -> None:
    await db.execute("CREATE TABLE readings (sensor text, value float8, at timestamptz)")
    write_orders(write_pipeline, table_db, "table: readings\nwatermark: at\ninterval: 1h")
    async with start_reactor(clock=FakeClock()) as reactor:
        await failing(
            reactor,
            "public.readings has no primary key; name the columns that identify a row with key:",
        )

    write_orders(
        write_pipeline,
        table_db,
        "table: readings\nwatermark: at\nkey: [sensor]\ninterval: 50ms",
        PIPELINE.replace("event.data.row.id", "1").replace("row.customer", "row.sensor"),
    )
    async with start_reactor() as reactor:
        await watching(reactor)
        await db.execute("INSERT INTO readings VALUES ('t1', 20.5, now()), ('t2', 21, now())")
        runs = await wait_runs(store, 2)
    assert customers(runs) == ["t1", "t2"]
