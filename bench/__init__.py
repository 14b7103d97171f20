"""Reactor's benchmarks, each beside a plain-asyncio floor doing the same work.

``python -m bench`` (``make bench``) runs them all and records the figures in
``bench/results/``; ``docs/performance.md`` explains them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any

from bench.events import event_to_task, http_event_to_task
from bench.files import file_to_task
from bench.kafka import kafka_ingest, kafka_to_task
from bench.loops import for_each_loop
from bench.measure import Figure, machine_facts, percentile, summary
from bench.memory import serve_memory
from bench.rules import rule_engine, rules_end_to_end
from bench.runs import chain, fan_out
from bench.schedule import schedule_to_task
from bench.store import store_throughput
from bench.store_postgres import postgres_store_throughput
from bench.table import table_to_task
from bench.ui import ui_pages
from bench.webhooks import webhook_throughput

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "Figure",
    "Sizes",
    "chain",
    "event_to_task",
    "fan_out",
    "file_to_task",
    "for_each_loop",
    "http_event_to_task",
    "kafka_ingest",
    "kafka_to_task",
    "machine_facts",
    "percentile",
    "rule_engine",
    "rules_end_to_end",
    "schedule_to_task",
    "serve_memory",
    "store_throughput",
    "summary",
    "table_to_task",
    "ui_pages",
    "webhook_throughput",
]

Report = Callable[[str], None]


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; :meth:`tiny` is for the smoke test."""

    events: int = 1000
    http_events: int = 1000
    files: int = 100
    files_default_settle: int = 50
    default_settle: float | None = None
    fan_out_width: int = 100
    fan_out_repeats: int = 10
    chain_length: int = 200
    chain_repeats: int = 5
    loop_items: int = 10_000
    loop_concurrency: int = 100
    serve_runs: int = 1000
    idle_wait: float = 1.0
    store_operations: int = 4000
    ticks: int = 500
    webhook_seconds: float = 5.0
    webhook_clients: int = 50
    table_rows: int = 200
    kafka_messages: int = 1000
    kafka_burst: int = 20_000
    rule_events: int = 200_000
    rule_publishes: int = 5000
    ui_runs: int = 100_000
    ui_events: int = 10_000
    ui_layers: int = 20
    ui_layer_width: int = 50
    ui_requests: int = 50
    ui_loads: int = 7

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(
            events=20,
            http_events=20,
            files=3,
            files_default_settle=2,
            default_settle=0.05,
            fan_out_width=10,
            fan_out_repeats=2,
            chain_length=10,
            chain_repeats=2,
            loop_items=50,
            loop_concurrency=5,
            serve_runs=20,
            idle_wait=0.1,
            store_operations=200,
            ticks=10,
            webhook_seconds=0.3,
            webhook_clients=5,
            table_rows=5,
            kafka_messages=20,
            kafka_burst=200,
            rule_events=2000,
            rule_publishes=50,
            ui_runs=200,
            ui_events=30,
            ui_layers=4,
            ui_layer_width=10,
            ui_requests=3,
            ui_loads=1,
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its name on the command line and how to run it at given sizes."""

    name: str
    title: str
    run: Callable[[Sizes, Report], Coroutine[Any, Any, list[Figure]]]


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "event",
        "event published -> first task started (in-process)",
        lambda s, report: event_to_task(s.events, report),
    ),
    Benchmark(
        "http",
        "event posted to /api/events -> first task started",
        lambda s, report: http_event_to_task(s.http_events, report),
    ),
    Benchmark(
        "webhooks",
        "signed webhook request -> 202, 50 concurrent clients",
        lambda s, report: webhook_throughput(s.webhook_seconds, s.webhook_clients, report),
    ),
    Benchmark(
        "schedule",
        "schedule tick due -> first task started",
        lambda s, report: schedule_to_task(s.ticks, report),
    ),
    Benchmark(
        "file",
        "file written -> first task started, settle 0",
        lambda s, report: file_to_task(s.files, 0.0, report),
    ),
    Benchmark(
        "file-settle",
        "file written -> first task started, default settle",
        lambda s, report: file_to_task(s.files_default_settle, s.default_settle, report),
    ),
    Benchmark(
        "fan-out",
        "root -> 100 parallel no-op tasks -> join",
        lambda s, report: fan_out(s.fan_out_width, s.fan_out_repeats, report),
    ),
    Benchmark(
        "chain",
        "a chain of 200 sequential no-op tasks",
        lambda s, report: chain(s.chain_length, s.chain_repeats, report),
    ),
    Benchmark(
        "for-each",
        "for_each over 10,000 no-op items, concurrency 100",
        lambda s, report: for_each_loop(s.loop_items, s.loop_concurrency, report),
    ),
    Benchmark(
        "memory",
        "peak RSS of reactor serve, idle and after 1,000 runs",
        lambda s, report: serve_memory(s.serve_runs, report, idle_wait=s.idle_wait),
    ),
    Benchmark(
        "store",
        "SQLite store: task transitions/s and events ingested/s",
        lambda s, report: store_throughput(s.store_operations, report),
    ),
    Benchmark(
        "store-postgres",
        "PostgreSQL store: task transitions/s and events ingested/s",
        lambda s, report: postgres_store_throughput(s.store_operations, report),
    ),
    Benchmark(
        "table",
        "row inserted -> first task started, NOTIFY and polling every 50 ms",
        lambda s, report: table_to_task(s.table_rows, report),
    ),
    Benchmark(
        "kafka",
        "Kafka message produced -> first task started",
        lambda s, report: kafka_to_task(s.kafka_messages, report),
    ),
    Benchmark(
        "kafka-ingest",
        "Kafka burst -> durable events with runs queued, messages/s",
        lambda s, report: kafka_ingest(s.kafka_burst, report),
    ),
    Benchmark(
        "rules",
        "rule engine alone, 1,000 triggers: events/s by kind of event",
        lambda s, report: rule_engine(s.rule_events, report),
    ),
    Benchmark(
        "rules-e2e",
        "publish -> outcome recorded with 1,000 triggers, SQLite, events/s",
        lambda s, report: rules_end_to_end(s.rule_publishes, report),
    ),
    Benchmark(
        "ui",
        "web UI over 100,000 runs: page server time and chromium load time",
        lambda s, report: ui_pages(
            s.ui_runs,
            s.ui_events,
            s.ui_layers,
            s.ui_layer_width,
            s.ui_requests,
            s.ui_loads,
            report,
        ),
    ),
)
