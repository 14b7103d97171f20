"""``GET /metrics`` on a real port, read with prometheus-client's own parser: counters after
real events and runs, histograms, and the gauges read at scrape time, on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from helpers import Recorder, wait_for
from kafka import TEST_SESSION, Broker, create_topic, produce, topic_name
from prometheus_client.parser import text_string_to_metric_families

from reactor.service import Reactor

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
from pathlib import Path

import anyio


def ok():
    return {"ok": True}


def boom():
    raise RuntimeError("no luck")


async def hold(name, gates):
    # Runs until the test opens this run's gate.
    folder = Path(gates)
    (folder / f"{name}.started").touch()
    with anyio.fail_after(20):
        while not (folder / f"{name}.go").exists():
            await anyio.sleep(0.005)
    return name
"""

GOOD = """
name: good
triggers:
  - id: jobs
    on: event
    type: job.good
    when: event.data.go
tasks:
  - id: first
    python: {module}:ok
  - id: second
    needs: [first]
    python: {module}:ok
"""

BAD = """
name: bad
triggers:
  - id: jobs
    on: event
    type: job.bad
tasks:
  - id: breaks
    python: {module}:boom
  - id: after
    needs: [breaks]
    python: {module}:ok
"""

HELD = """
name: held
triggers:
  - id: jobs
    on: event
    type: "job.*"
tasks:
  - id: only
    python: {module}:ok
"""

SLOW = """
name: slow
params:
  name: {{type: string}}
  gates: {{type: string}}
concurrency: {{max_active_runs: 1, on_overlap: queue}}
triggers:
  - id: jobs
    on: event
    type: slow.job
    params: {{name: "{{{{ event.data.name }}}}", gates: "{{{{ event.data.gates }}}}"}}
tasks:
  - id: work
    python: {module}:hold
    args: {{name: "{{{{ params.name }}}}", gates: "{{{{ params.gates }}}}"}}
"""

KAFKA = """
name: orders
triggers:
  - id: incoming
    on: kafka
    connection: {url}
    topic: {topic}
    group: {topic}
    from: earliest
    session_timeout: {session}
tasks:
  - id: show
    shell: "echo {{{{ event.data.n }}}}"
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape by name and labels, as prometheus-client reads it."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


@asynccontextmanager
async def served(start_reactor, **settings) -> AsyncIterator[tuple[Reactor, httpx.AsyncClient]]:
    async with start_reactor(http=("127.0.0.1", 0), **settings) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield reactor, client


async def scrape(client: httpx.AsyncClient) -> Samples:
    answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(answer.text)


async def publish(client: httpx.AsyncClient, **event: object) -> httpx.Response:
    return await client.post("/api/events", json={"specversion": "1.0", **event})


async def test_counters_and_histograms_after_real_events_and_runs(
    write_pipeline, write_module, start_reactor, recorder: Recorder
) -> None:
    module = write_module(STEPS)
    for name, text in (("good", GOOD), ("bad", BAD), ("held", HELD)):
        write_pipeline(f"{name}.yaml", text.format(module=module))

    async with served(start_reactor) as (reactor, client):
        before = await scrape(client)
        await reactor.pause("held", "jobs", actor="test")
        good = await publish(client, type="job.good", id="e1", data={"go": True})
        again = await publish(client, type="job.good", id="e1", data={"go": True})
        bad = await publish(client, type="job.bad", id="e2")
        quiet = await publish(client, type="job.good", id="e3", data={"go": False})
        assert [good.status_code, again.status_code, bad.status_code] == [202, 200, 202]
        assert again.json()["duplicate"] is True
        assert quiet.json()["run_ids"] == []
        await recorder.wait_finished(2)
        after = await scrape(client)

    # Nothing counted before anything happened; the gauges are there from the start.
    assert value(before, "reactor_runs_total", pipeline="good", status="succeeded") is None
    assert value(before, "reactor_rule_inbox_events") == 0
    assert {"reactor_runs_queued", "reactor_runs_running", "reactor_sensor_lag"}.isdisjoint(
        names(before)
    )  # no pipeline has runs queued or running, and no sensor runs: no samples

    assert value(after, "reactor_events_total", source="api", type="job.good") == 2
    assert value(after, "reactor_events_total", source="api", type="job.bad") == 1
    assert value(after, "reactor_event_duplicates_total", source="api") == 1

    def evaluations(pipeline: str, outcome: str) -> float | None:
        return value(
            after,
            "reactor_trigger_evaluations_total",
            pipeline=pipeline,
            trigger=f"{pipeline}/jobs",
            outcome=outcome,
        )

    assert evaluations("good", "fired") == 1
    assert evaluations("good", "condition_false") == 1
    assert evaluations("bad", "fired") == 1
    assert evaluations("held", "paused") == 3

    assert value(after, "reactor_runs_total", pipeline="good", status="succeeded") == 1
    assert value(after, "reactor_runs_total", pipeline="bad", status="failed") == 1
    assert value(after, "reactor_runs_total", pipeline="held", status="succeeded") is None
    assert value(after, "reactor_tasks_total", pipeline="good", status="succeeded") == 2
    assert value(after, "reactor_tasks_total", pipeline="bad", status="failed") == 1
    assert value(after, "reactor_tasks_total", pipeline="bad", status="upstream_failed") == 1

    for pipeline in ("good", "bad"):
        assert value(after, "reactor_run_duration_seconds_count", pipeline=pipeline) == 1
        assert value(after, "reactor_event_to_run_seconds_count", pipeline=pipeline) == 1
        latency = value(after, "reactor_event_to_run_seconds_sum", pipeline=pipeline)
        assert latency is not None and latency > 0
        assert (
            value(after, "reactor_event_to_run_seconds_bucket", pipeline=pipeline, le="+Inf") == 1
        )
    # The upstream_failed task never started: it has no duration.
    assert value(after, "reactor_task_duration_seconds_count", pipeline="good") == 2
    assert value(after, "reactor_task_duration_seconds_count", pipeline="bad") == 1

    def store_calls(operation: str) -> float:
        count = value(after, "reactor_store_operation_seconds_count", operation=operation)
        return count or 0

    assert store_calls("ingest") >= 4  # the four publishes, the duplicate among them
    assert store_calls("record_outcomes") >= 3
    assert store_calls("create_run") == 0  # runs fired by events are admitted with them
    assert store_calls("set_run_status") >= 4  # each run: running, then its end
    assert store_calls("save_tasks") >= 1
    assert value(after, "reactor_rule_inbox_events") == 0


async def test_queue_depth_is_read_when_scraped(
    write_pipeline, write_module, start_reactor, tmp_path: Path
) -> None:
    module = write_module(STEPS)
    write_pipeline("slow.yaml", SLOW.format(module=module))
    gates = tmp_path / "gates"
    gates.mkdir()

    def started() -> set[str]:
        return {p.stem for p in gates.glob("*.started")}

    async with served(start_reactor) as (reactor, client):
        for name in "abc":
            answer = await publish(
                client, type="slow.job", data={"name": name, "gates": str(gates)}
            )
            assert answer.status_code == 202
        await wait_for(lambda: started() == {"a"}, message="a to start")
        waiting = await scrape(client)
        for name in "abc":
            (gates / f"{name}.go").touch()
        await wait_for(lambda: not reactor.backlog().queued, message="the queue to empty")
        await wait_for(lambda: not reactor.backlog().running, message="the runs to end")
        drained = await scrape(client)

    assert value(waiting, "reactor_runs_queued", pipeline="slow") == 2
    assert value(waiting, "reactor_runs_running", pipeline="slow") == 1
    assert value(drained, "reactor_runs_queued", pipeline="slow") is None
    assert value(drained, "reactor_runs_running", pipeline="slow") is None
    assert value(drained, "reactor_runs_total", pipeline="slow", status="succeeded") == 3
    # Queued runs waited for the first: each start is measured from its own event.
    assert value(drained, "reactor_event_to_run_seconds_count", pipeline="slow") == 3


async def test_sensor_events_dead_letters_lag_and_state(
    kafka_broker: Broker, write_pipeline, start_reactor, recorder: Recorder
) -> None:
    topic = topic_name("metrics")
    await create_topic(kafka_broker, topic)
    write_pipeline(
        "orders.yaml", KAFKA.format(url=kafka_broker.url, topic=topic, session=TEST_SESSION)
    )
    await produce(
        kafka_broker,
        topic,
        [(b"k", b'{"n": 1}', []), (b"k", b"{not json", []), (b"k", b'{"n": 3}', [])],
    )
    key = "orders/incoming"
    async with served(start_reactor) as (reactor, client):
        await recorder.wait_finished(2, timeout=30)
        await wait_for(lambda: reactor.sensor_health()[key].dead_letters == 1)
        await wait_for(lambda: reactor.sensor_health()[key].lag == 0, timeout=20)
        samples = await scrape(client)

    assert value(samples, "reactor_events_total", source=key, type="reactor.kafka.message") == 2
    assert value(samples, "reactor_dead_letters_total", trigger=key) == 1
    assert value(samples, "reactor_sensor_lag", trigger=key) == 0
    assert value(samples, "reactor_sensor_up", trigger=key) == 1
    fired = {"pipeline": "orders", "trigger": key, "outcome": "fired"}
    assert value(samples, "reactor_trigger_evaluations_total", **fired) == 2
    # The sensor stores its batches with ingest_many.
    assert (
        value(samples, "reactor_store_operation_seconds_count", operation="ingest_many") or 0
    ) >= 1
