"""``reactor redrive --dead-letter`` against a real ``reactor serve`` and Kafka broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import wait_for
from kafka import TEST_SESSION, Broker, create_topic, produce, topic_name

from reactor.client import Client

from .commands import run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

NOTES = """
name: notes
params:
  body: {{type: string}}
triggers:
  - on: kafka
    connection: {url}
    topic: {topic}
    group: {topic}
    from: earliest
    session_timeout: {session}
    params: {{body: "{{{{ event.data }}}}"}}
tasks:
  - id: show
    shell: "echo {{{{ params.body }}}}"
"""


async def test_redrive_a_dead_letter_from_the_command_line(
    kafka_broker: Broker, serve, folder, tmp_path: Path
) -> None:
    topic = topic_name("notes")
    await create_topic(kafka_broker, topic)
    await produce(kafka_broker, topic, [b"not json at all"])
    text = NOTES.format(url=kafka_broker.url, topic=topic, session=TEST_SESSION)
    pipelines = folder("pipelines", {"notes.yaml": text})
    served = serve(pipelines, "--store", f"sqlite:///{tmp_path / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")

    letters: list[dict[str, Any]] = []

    def lettered() -> bool:
        letters[:] = httpx.get(f"{served.url}/api/dead-letters").json()
        return len(letters) == 1

    await wait_for(lettered, timeout=30, message="the dead letter")
    seq = str(letters[0]["seq"])

    refused = run_reactor("redrive", "--dead-letter", seq, "--url", served.url)
    assert refused.code == 1
    assert "it still does not decode as json: value is not JSON" in refused.err
    first = run_reactor("redrive", "--dead-letter", seq, "--decode", "text", "--url", served.url)
    assert first.code == 0, first.err
    client = Client(served.url)
    [run] = client.runs(None, 10)
    assert f"event {topic}/0/0 from reactor/sensors/notes/kafka" in first.out
    assert f"1 event(s) re-driven; fired: 1 new run(s) {run['id']}" in first.out
    finished = client.wait_run(run["id"], timeout=30)
    assert (finished["status"], finished["params"]) == ("succeeded", {"body": "not json at all"})

    again = run_reactor("redrive", "--dead-letter", seq, "--decode", "text", "--url", served.url)
    assert again.code == 0, again.err
    assert f"fired: 0 new run(s); existing run(s) {run['id']}" in again.out
    assert len(client.runs(None, 10)) == 1

    missing = run_reactor("redrive", "--dead-letter", "999999", "--url", served.url)
    assert missing.code == 1
    assert "404: no dead letter 999999" in missing.err
    alone = run_reactor("redrive", "x-1", "--decode", "text", "--url", served.url)
    assert alone.code == 2
    assert "--decode goes with --dead-letter" in alone.err
    mixed = run_reactor("redrive", "--dead-letter", seq, "--dry-run", "--url", served.url)
    assert mixed.code == 2
    assert "--dry-run and --limit do not go with --dead-letter" in mixed.err
