"""Row inserted -> first task started, through ``on: table`` with NOTIFY and with polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from bench.measure import Figure, summary
from bench.store_postgres import _database
from bench.workspace import Probe, Workspace
from reactor.service import Reactor, Settings
from reactor.store import SqliteStore

__all__ = ["table_to_task"]

WARMUP = 5
POLL_INTERVAL = 0.05

TABLE = """
CREATE TABLE orders (id bigserial PRIMARY KEY, note text NOT NULL);
CREATE FUNCTION orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('orders_changed', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER orders_notify AFTER INSERT ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_notify();
"""

PIPELINE = """\
name: bench_table
triggers:
  - on: table
    connection: {url}
    table: orders
    watermark: id
{mode}tasks:
  - id: first
    python: "{module}:mark"
    args: {key: "{{ event.data.row.id }}"}
"""

MODES = {
    "notify": "    notify: orders_changed\n    interval: 1h\n",
    "watermark": f"    interval: {POLL_INTERVAL}s\n",
}

Report = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


async def _insert(db: asyncpg.Connection) -> tuple[int, float]:
    """One row in its own transaction; its id and when the commit was sent."""
    sent = time.perf_counter()
    row_id = await db.fetchval("INSERT INTO orders (note) VALUES ('bench') RETURNING id")
    return int(row_id), sent


async def _reactor_latencies(url: str, mode: str, count: int, report: Report) -> list[float]:
    with Workspace() as ws:
        ws.write("bench_table", PIPELINE.replace("{url}", url).replace("{mode}", MODES[mode]))
        probe = Probe()
        uninstall = probe.install(ws.tasks())
        latencies = []
        step = max(count // 4, 1)
        db = await asyncpg.connect(url)
        try:
            settings = Settings(reload=False)
            async with Reactor(
                ws.pipelines, SqliteStore(ws.database), settings=settings, observers=[probe]
            ) as reactor:
                await _until_watching(reactor)
                for i in range(-WARMUP, count):
                    row_id, sent = await _insert(db)
                    started = await probe.wait(row_id)
                    if i >= 0:
                        latencies.append((started - sent) * 1000)
                        if (i + 1) % step == 0 and i + 1 < count:
                            report(f"  {mode}: {i + 1}/{count} rows")
        finally:
            await db.close()
            uninstall()
    return latencies


async def _until_watching(reactor: Reactor, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(h.state != "watching" for h in reactor.sensor_health().values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"table sensor not watching after {timeout:g}s")
        await asyncio.sleep(0.005)


async def _notify_floor(url: str, count: int) -> list[float]:
    """The floor of NOTIFY: a plain asyncpg listener starting a task per notification."""
    listener, db = await asyncpg.connect(url), await asyncpg.connect(url)
    arrived: dict[int, asyncio.Future[float]] = {}
    loop = asyncio.get_running_loop()

    async def mark(row_id: int) -> None:
        arrived.setdefault(row_id, loop.create_future()).set_result(time.perf_counter())

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        pending.add(loop.create_task(mark(int(payload))))

    pending: set[asyncio.Task[None]] = set()
    await listener.add_listener("orders_changed", on_notify)
    latencies = []
    try:
        for i in range(-WARMUP, count):
            row_id, sent = await _insert(db)
            started = await asyncio.wait_for(arrived.setdefault(row_id, loop.create_future()), 30)
            if i >= 0:
                latencies.append((started - sent) * 1000)
    finally:
        await listener.close()
        await db.close()
    return latencies


async def _poll_floor(url: str, count: int) -> list[float]:
    """The floor of polling: a plain loop reading ``id > last`` every interval."""
    poller, db = await asyncpg.connect(url), await asyncpg.connect(url)
    last = int(await db.fetchval("SELECT coalesce(max(id), 0) FROM orders"))
    seen: dict[int, float] = {}
    new_row = asyncio.Event()

    async def poll() -> None:
        nonlocal last
        while True:
            for row in await poller.fetch("SELECT id FROM orders WHERE id > $1 ORDER BY id", last):
                seen[row["id"]] = time.perf_counter()
                last = row["id"]
                new_row.set()
            await asyncio.sleep(POLL_INTERVAL)

    task = asyncio.create_task(poll())
    latencies = []
    try:
        for i in range(-WARMUP, count):
            row_id, sent = await _insert(db)
            while row_id not in seen:
                new_row.clear()
                await asyncio.wait_for(new_row.wait(), 30)
            if i >= 0:
                latencies.append((seen[row_id] - sent) * 1000)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await poller.close()
        await db.close()
    return latencies


async def table_to_task(count: int = 200, report: Report = _quiet) -> list[Figure]:
    """Rows inserted one at a time; each one's commit -> its run's first task starting (ms)."""
    figures = []
    async with _database() as url:
        db = await asyncpg.connect(url)
        try:
            await db.execute(TABLE)
        finally:
            await db.close()
        for mode, floor_of in (("notify", _notify_floor), ("watermark", _poll_floor)):
            latencies = await _reactor_latencies(url, mode, count, report)
            floor = await floor_of(url, count)
            stats, floor_stats = summary(latencies), summary(floor)
            if mode == "notify":
                name = "table_to_task notify"
                note = (
                    "INSERT committed (a trigger sends NOTIFY) -> task function starts; the sensor"
                    " reads the new rows on each notification; floor: a bare asyncpg listener"
                )
            else:
                name = f"table_to_task poll {POLL_INTERVAL * 1000:g} ms"
                note = (
                    "INSERT committed -> task function starts, the sensor polling by the id"
                    " watermark; floor: a bare loop selecting id > last at the same interval"
                )
            extra = {"mean_ms": stats["mean"], "max_ms": stats["max"], "n": stats["n"]}
            figures += [
                Figure(name, "p50", stats["p50"], "ms", floor_stats["p50"], note=note),
                Figure(name, "p99", stats["p99"], "ms", floor_stats["p99"], extra=extra),
                Figure(name, "added over floor, p50", stats["p50"] - floor_stats["p50"], "ms"),
            ]
    return figures
