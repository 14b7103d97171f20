"""Event published -> first task started, in-process and through ``POST /api/events``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.measure import Figure, summary
from bench.workspace import Probe, Workspace
from reactor.events import Event
from reactor.service import Reactor, Settings
from reactor.store import SqliteStore

__all__ = ["event_to_task", "http_event_to_task"]

EVENT_TYPE = "bench.ping"
WARMUP = 20

PIPELINE = """\
name: bench_event
triggers:
  - on: event
    type: bench.ping
tasks:
  - id: first
    python: "{module}:mark"
    args: {key: "{{ event.data.key }}"}
"""

Report = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


async def _measure(
    count: int, send: Callable[[int], Awaitable[None]], probe: Probe, report: Report
) -> list[float]:
    """Send ``count`` events one at a time; the time from each send to its task's start (ms)."""
    for key in range(-WARMUP, 0):
        await send(key)
        await probe.wait(key)
    latencies = []
    step = max(count // 4, 1)
    for key in range(count):
        before = time.perf_counter()
        await send(key)
        started = await probe.wait(key)
        latencies.append((started - before) * 1000)
        if (key + 1) % step == 0 and key + 1 < count:
            report(f"  {key + 1}/{count} events")
    return latencies


def _figures(
    benchmark: str,
    latencies: list[float],
    floor: list[float],
    note: str,
    extra: dict[str, float] | None = None,
) -> list[Figure]:
    stats, floor_stats = summary(latencies), summary(floor)
    extra = {"mean_ms": stats["mean"], "max_ms": stats["max"], "n": stats["n"]} | (extra or {})
    return [
        Figure(benchmark, "p50", stats["p50"], "ms", floor_stats["p50"], 5.0, note=note),
        Figure(benchmark, "p99", stats["p99"], "ms", floor_stats["p99"], 20.0, extra=extra),
    ]


async def event_to_task(count: int = 1000, report: Report = _quiet) -> list[Figure]:
    """``Reactor.publish(Event(...))`` -> the first task's function starts, SQLite store."""
    with Workspace() as ws:
        ws.write("bench_event", PIPELINE)
        probe = Probe()
        uninstall = probe.install(ws.tasks())
        publish_ms: list[float] = []
        try:
            async with Reactor(
                ws.pipelines, SqliteStore(ws.database), observers=[probe]
            ) as reactor:

                async def send(key: int) -> None:
                    before = time.perf_counter()
                    result = await reactor.publish(Event(EVENT_TYPE, "bench", {"key": key}))
                    publish_ms.append((time.perf_counter() - before) * 1000)
                    if len(result.run_ids) != 1:
                        raise RuntimeError(f"event {key} started {result.run_ids}, not one run")

                latencies = await _measure(count, send, probe, report)
        finally:
            uninstall()
    floor = await _queue_floor(count)
    durable = await _durable_queue_floor(count)
    publish = summary(publish_ms[WARMUP:])
    figures = _figures(
        "event_to_task",
        latencies,
        floor,
        "Reactor.publish -> task function starts; floor: asyncio.Queue -> gather",
        {"publish_returned_p50_ms": publish["p50"], "publish_returned_p99_ms": publish["p99"]},
    )
    durable_stats = summary(durable)
    figures.append(
        Figure(
            "event_to_task",
            "floor with one SQLite commit, p50",
            durable_stats["p50"],
            "ms",
            note="reference: the floor plus one durable insert per event (sqlite3 in a thread)",
            extra={"p99_ms": durable_stats["p99"]},
        )
    )
    return figures


async def _queue_floor(count: int) -> list[float]:
    """The same work without a framework: a queue, a consumer, a task started with gather."""
    probe = Probe()
    queue: asyncio.Queue[int] = asyncio.Queue(1024)

    async def mark(key: int) -> None:
        probe(key, time.perf_counter())

    async def consume() -> None:
        while True:
            key = await queue.get()
            await asyncio.gather(mark(key))

    consumer = asyncio.create_task(consume())
    try:
        return await _measure(count, queue.put, probe, _quiet)
    finally:
        consumer.cancel()


async def _durable_queue_floor(count: int) -> list[float]:
    """The queue floor plus one committed insert per event (WAL, synchronous=NORMAL)."""
    with Workspace() as ws:
        conn = sqlite3.connect(ws.root / "floor.db", isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            probe = Probe()
            queue: asyncio.Queue[int] = asyncio.Queue(1024)

            def insert(key: int) -> None:
                conn.execute("INSERT INTO events VALUES (?, ?)", (key, json.dumps({"key": key})))

            async def send(key: int) -> None:
                await asyncio.to_thread(insert, key)
                await queue.put(key)

            async def mark(key: int) -> None:
                probe(key, time.perf_counter())

            async def consume() -> None:
                while True:
                    key = await queue.get()
                    await asyncio.gather(mark(key))

            consumer = asyncio.create_task(consume())
            try:
                return await _measure(count, send, probe, _quiet)
            finally:
                consumer.cancel()
        finally:
            conn.close()


async def http_event_to_task(count: int = 1000, report: Report = _quiet) -> list[Figure]:
    """``POST /api/events`` (httpx, a served port) -> the first task's function starts."""
    with Workspace() as ws:
        ws.write("bench_event", PIPELINE)
        probe = Probe()
        uninstall = probe.install(ws.tasks())
        try:
            settings = Settings(http=("127.0.0.1", 0))
            store = SqliteStore(ws.database)
            async with Reactor(
                ws.pipelines, store, settings=settings, observers=[probe]
            ) as reactor:
                url = f"http://127.0.0.1:{reactor.http_port}"
                latencies = await _measure_http(url, count, probe, report)
        finally:
            uninstall()
    floor = await _http_floor(count)
    return _figures(
        "http_event_to_task",
        latencies,
        floor,
        "POST /api/events (httpx, keep-alive, same process) -> task function starts;"
        " floor: a bare asyncio HTTP server -> gather",
    )


async def _measure_http(url: str, count: int, probe: Probe, report: Report) -> list[float]:
    headers = {"content-type": "application/cloudevents+json"}
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:

        async def send(key: int) -> None:
            body = {"specversion": "1.0", "type": EVENT_TYPE, "data": {"key": key}}
            response = await client.post("/api/events", json=body, headers=headers)
            if response.status_code != 202:
                raise RuntimeError(f"POST /api/events: {response.status_code} {response.text}")

        return await _measure(count, send, probe, report)


async def _http_floor(count: int) -> list[float]:
    """The floor: asyncio.start_server parsing HTTP/1.1 by hand, a task started with gather."""
    probe = Probe()
    handlers: set[asyncio.Task[Any]] = set()

    async def mark(key: int) -> None:
        probe(key, time.perf_counter())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        current = asyncio.current_task()
        assert current is not None
        handlers.add(current)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                event = json.loads(await reader.readexactly(length))
                await asyncio.gather(mark(event["data"]["key"]))
                body = b'{"event_id":"x","run_ids":["y"]}'
                writer.write(
                    b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await _measure_http(f"http://127.0.0.1:{port}", count, probe, _quiet)
    finally:
        server.close()
        await server.wait_closed()
        # The client has closed its connection: let each handler see the end of it.
        if handlers:
            await asyncio.wait(handlers, timeout=5)
