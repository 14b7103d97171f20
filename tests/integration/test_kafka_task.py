"""``kafka:`` tasks against a real broker: a message produced, read back, and failures."""

from __future__ import annotations

import json
import socket

import pytest
from kafka import Broker, create_topic, read_topic, topic_name

from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PUBLISH = """
name: publish
params:
  order: {{type: string}}
tasks:
  - id: total
    python: {module}:total
  - id: announce
    needs: [total]
    connection: {connection}
    kafka:
      topic: {topic}
      key: "{{{{ params.order }}}}"
      headers: {{origin: reactor, run: "{{{{ run.id }}}}"}}
      value: {{order: "{{{{ params.order }}}}", total: "{{{{ tasks.total.output }}}}"}}
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_task_produces_a_message(
    kafka_broker: Broker,
    pipelines_dir,
    write_pipeline,
    write_module,
    start_reactor,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = topic_name("announce")
    await create_topic(kafka_broker, topic)
    monkeypatch.setenv("TEST_KAFKA_URL", kafka_broker.url)
    (pipelines_dir / "reactor.yaml").write_text("connections:\n  events: env:TEST_KAFKA_URL\n")
    module = write_module("def total():\n    return 42\n")
    write_pipeline("publish.yaml", PUBLISH.format(module=module, connection="events", topic=topic))
    async with start_reactor() as reactor:
        run = await reactor.run_now("publish", {"order": "A-1"})
        done = await wait_run(store, run.id, timeout=20)
    assert done.status == "succeeded", done.reason
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["announce"].output == {"topic": topic, "partition": 0, "offset": 0}
    [message] = await read_topic(kafka_broker, topic, 1)
    assert message.key == b"A-1"
    assert json.loads(message.value) == {"order": "A-1", "total": 42}
    assert dict(message.headers) == {"origin": b"reactor", "run": run.id.encode()}


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_task_fails_with_the_reason_when_the_broker_is_unreachable(
    write_pipeline, write_module, start_reactor, store: Store
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    module = write_module("def total():\n    return 1\n")
    write_pipeline(
        "publish.yaml",
        PUBLISH.format(module=module, connection=f"kafka://127.0.0.1:{port}", topic="nowhere"),
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("publish", {"order": "A-2"})
        done = await wait_run(store, run.id, timeout=40)
    assert done.status == "failed"
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["announce"].status == "failed"
    assert f"Kafka at 127.0.0.1:{port}" in (tasks["announce"].error or "")
