"""``on: kafka`` against a real broker: params and ``when:`` from messages, dead letters,
unknown topics, a broker that comes up late, and a 10,000-message burst under the limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import Recorder, wait_for
from kafka import TEST_SESSION, Broker, create_topic, produce, read_topic, topic_name

from reactor.service import Reactor
from reactor.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

ORDERS = """
name: orders
params:
  n: {{type: integer}}
  customer: {{type: string}}
  region: {{type: string}}
  topic: {{type: string}}
  offset: {{type: integer}}
triggers:
  - on: kafka
    connection: {url}
    topic: {topic}
    group: {topic}
    from: earliest
    session_timeout: {session}
    dlq: {dlq}
    when: >-
      event.kafka.headers.kind == 'order' and event.data.amount > 100
      and event.kafka.key.startswith('eu-')
    params:
      n: "{{{{ event.data.n }}}}"
      customer: "{{{{ event.kafka.key }}}}"
      region: "{{{{ event.kafka.headers.region }}}}"
      topic: "{{{{ event.kafka.topic }}}}"
      offset: "{{{{ event.kafka.offset }}}}"
tasks:
  - id: show
    shell: "echo {{{{ params.n }}}}"
"""


def order(n: int, amount: int, key: str = "eu-1", kind: str = "order") -> tuple:
    value = json.dumps({"n": n, "amount": amount}).encode()
    return key.encode(), value, [("kind", kind.encode()), ("region", b"west")]


async def watching(reactor: Reactor, key: str, timeout: float = 20.0) -> None:
    def ready() -> bool:
        health = reactor.sensor_health().get(key)
        return health is not None and health.state == "watching"

    await wait_for(ready, timeout=timeout, message=f"sensor {key} to watch")


async def test_params_when_and_dead_letters(
    kafka_broker: Broker, write_pipeline, start_reactor, store: Store, recorder: Recorder
) -> None:
    topic, dlq = topic_name("orders"), topic_name("orders-dlq")
    await create_topic(kafka_broker, topic, dlq)
    write_pipeline(
        "orders.yaml",
        ORDERS.format(url=kafka_broker.url, topic=topic, session=TEST_SESSION, dlq=dlq),
    )
    await produce(
        kafka_broker,
        topic,
        [
            order(1, 500),
            order(2, 50),  # amount too small
            order(3, 500, kind="refund"),  # header says no
            order(4, 500, key="us-7"),  # key says no
            (b"eu-1", b"{not json", [("kind", b"order")]),  # undecodable: dead letter
            order(6, 900, key="eu-2"),
        ],
    )
    async with start_reactor() as reactor:
        runs = await recorder.wait_finished(2, timeout=30)
        key = "orders/kafka"
        await wait_for(lambda: reactor.sensor_health()[key].dead_letters == 1)
        # Lag is measured between fetches (and unknown again while a busy machine makes
        # the group rebalance): wait for a measure after the last message.
        await wait_for(lambda: reactor.sensor_health()[key].lag == 0, timeout=30)
        health = reactor.sensor_health()[key]
        assert health.events == 5  # every decodable message is an event, matched or not
    assert sorted((r.params["n"], r.params["customer"]) for r in runs) == [(1, "eu-1"), (6, "eu-2")]
    first = min(runs, key=lambda r: r.params["n"])
    assert first.params == {
        "n": 1,
        "customer": "eu-1",
        "region": "west",
        "topic": topic,
        "offset": 0,
    }
    assert first.event_ids == [f"{topic}/0/0"]
    assert all(r.status == "succeeded" for r in runs)

    letters = await store.dead_letters(key)
    assert [(d.ref, d.reason.split(":")[0]) for d in letters] == [
        (f"{topic}/0/4", "value is not JSON")
    ]
    assert letters[0].payload["key"] == "eu-1"
    [copy] = await read_topic(kafka_broker, dlq, 1)
    assert copy.value == b"{not json"
    assert dict(copy.headers)["reactor.source"] == f"{topic}/0/4".encode()
    assert dict(copy.headers)["reactor.reason"].startswith(b"value is not JSON")


SIMPLE = """
name: {name}
concurrency: {{max_active_runs: {limit}}}
params:
  n: {{type: integer}}
triggers:
  - on: kafka
    connection: {url}
    topic: {topic}
    group: {topic}
    from: earliest
    session_timeout: {session}
    fetch_batch: {batch}
    params: {{n: "{{{{ event.data.n }}}}"}}
tasks:
  - id: show
    python: {module}:show
    args: {{n: "{{{{ params.n }}}}"}}
"""

STEPS = """
def show(n):
    return n
"""


def simple(write_pipeline, write_module, name: str, url: str, topic: str, **extra) -> None:
    settings = {"limit": 16, "batch": 500, **extra}
    write_pipeline(
        f"{name}.yaml",
        SIMPLE.format(
            name=name,
            url=url,
            topic=topic,
            session=TEST_SESSION,
            module=write_module(STEPS),
            **settings,
        ),
    )


def numbers(first: int, count: int) -> list[bytes]:
    return [json.dumps({"n": n}).encode() for n in range(first, first + count)]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_unknown_topic_is_reported_until_it_exists(
    kafka_broker: Broker, write_pipeline, write_module, start_reactor, recorder: Recorder
) -> None:
    topic = topic_name("later")
    simple(write_pipeline, write_module, "later", kafka_broker.url, topic)
    async with start_reactor() as reactor:
        key = "later/kafka"

        def reported() -> bool:
            health = reactor.sensor_health()[key]
            return health.state == "failing" and "does not exist" in health.message

        await wait_for(reported, message="the missing topic to be reported")
        assert f"topic {topic!r} does not exist on {kafka_broker.bootstrap}" in (
            reactor.sensor_health()[key].message
        )
        await create_topic(kafka_broker, topic)
        await watching(reactor, key)
        await produce(kafka_broker, topic, numbers(1, 1))
        [run] = await recorder.wait_finished(1, timeout=20)
    assert run.params == {"n": 1}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_broker_down_at_start_then_up(
    tmp_path: Path, write_pipeline, write_module, start_reactor, recorder: Recorder
) -> None:
    broker = Broker(log=tmp_path / "late-broker.log")  # a free port nobody listens on yet
    topic = topic_name("late")
    simple(write_pipeline, write_module, "late", broker.url, topic)
    try:
        async with start_reactor() as reactor:
            key = "late/kafka"

            def failing() -> bool:
                health = reactor.sensor_health()[key]
                return health.state == "failing" and broker.bootstrap in health.message

            await wait_for(failing, message="the unreachable broker to be reported")
            assert reactor.accepting  # the service runs on without it
            broker.start()
            await create_topic(broker, topic)
            await watching(reactor, key, timeout=30)
            await produce(broker, topic, numbers(7, 1))
            [run] = await recorder.wait_finished(1, timeout=20)
            assert run.params == {"n": 7}
            assert reactor.sensor_health()[key].restarts == 0  # the sensor retried by itself
    finally:
        broker.stop()


BURST = 10_000


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_burst_is_queued_under_max_active_runs(
    kafka_broker: Broker,
    write_pipeline,
    write_module,
    start_reactor,
    store: Store,
    recorder: Recorder,
) -> None:
    topic = topic_name("burst")
    await create_topic(kafka_broker, topic, partitions=4)
    simple(write_pipeline, write_module, "burst", kafka_broker.url, topic, limit=4)
    await produce(kafka_broker, topic, numbers(0, BURST))
    running: set[str] = set()
    most = 0

    async with start_reactor() as reactor:
        key = "burst/kafka"

        async def all_stored() -> bool:
            return reactor.sensor_health()[key].events == BURST

        await wait_for(all_stored, timeout=60, message=f"{BURST} events to be stored")
        await wait_for(
            lambda: len({c[0] for c in recorder.changes}) == BURST,
            timeout=60,
            message="a run for every message",
        )
        for run_id, _, status in recorder.changes:
            if status == "running":
                running.add(run_id)
                most = max(most, len(running))
            elif status in ("succeeded", "failed", "cancelled"):
                running.discard(run_id)
        assert reactor.sensor_health()[key].lag == 0
    assert 1 <= most <= 4
    runs = await store.list_runs(pipeline="burst", limit=BURST + 10, before=None)
    assert len(runs) == BURST
    assert sorted(r.params["n"] for r in runs) == list(range(BURST))
