"""Re-driving a Kafka dead letter against a real broker: the letter becomes the event the
sensor would have built, under its usual id, so a second re-drive starts nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from helpers import wait_for
from kafka import TEST_SESSION, Broker, create_topic, produce, topic_name

from reactor.client import AsyncClient
from reactor.errors import ClientError
from reactor.redrive import RedriveError, parse_request
from reactor.store import Store
from reactor.store.records import DeadLetter

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TEXTS = """
name: texts
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

OTHER = """
name: other
triggers:
  - on: event
    type: invoice.paid
tasks:
  - id: show
    shell: "echo invoice"
"""


async def test_a_dead_letter_is_redriven_once_with_another_decoding(
    kafka_broker: Broker, write_pipeline, start_reactor, store: Store
) -> None:
    topic = topic_name("texts")
    await create_topic(kafka_broker, topic)
    write_pipeline(
        "texts.yaml", TEXTS.format(url=kafka_broker.url, topic=topic, session=TEST_SESSION)
    )
    write_pipeline("other.yaml", OTHER)
    await produce(kafka_broker, topic, [(b"k-1", b"plain words", [("kind", b"note")])])
    key = "texts/kafka"
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        await wait_for(lambda: reactor.sensor_health()[key].dead_letters == 1, timeout=30)
        [letter] = await store.dead_letters(key)
        assert letter.seq is not None
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            # The trigger's own decoding (json) still fails: nothing is stored or started.
            answer = await http.post("/api/events/redrive", json={"dead_letter": letter.seq})
            assert answer.status_code == 422
            assert answer.json()["error"].startswith(
                f"dead letter {letter.seq} (texts/kafka): it still does not decode as json:"
                " value is not JSON"
            )
            assert await store.find_events(f"{topic}/0/0", 2) == []

            answer = await http.post(
                "/api/events/redrive",
                json={"dead_letter": letter.seq, "decode": "text"},
                headers={"X-Actor": "gina"},
            )
            assert answer.status_code == 200, answer.text
            found = answer.json()
            [run_id] = found["new_run_ids"]
            [item] = found["events"]
            assert item["event"]["id"] == f"{topic}/0/0"
            assert item["event"]["source"] == f"reactor/sensors/{key}"
            run = await wait_run(store, run_id)
            assert (run.status, run.params, run.event_ids) == (
                "succeeded",
                {"body": "plain words"},
                [f"{topic}/0/0"],
            )
            [stored] = await store.find_events(f"{topic}/0/0", 2)
            assert stored.event.data == "plain words"
            assert stored.event.extensions["kafka"] == {
                "topic": topic,
                "partition": 0,
                "offset": 0,
                "key": "k-1",
                "headers": {"kind": "note"},
                "timestamp": letter.payload["timestamp"],
            }
            assert stored.event.time == datetime.fromisoformat(letter.payload["timestamp"])

            answer = await http.post("/api/events/redrive", json={"dead_letter": 999_999})
            assert (answer.status_code, answer.json()) == (
                404,
                {"error": "no dead letter 999999"},
            )

        other = DeadLetter("other/event", "broken", {"x": 1}, datetime.now(UTC), "r")
        other_seq = await store.add_dead_letter(other)
        bare = DeadLetter(key, "broken", {"topic": topic}, datetime.now(UTC), "r")
        bare_seq = await store.add_dead_letter(bare)
        async with AsyncClient(base) as client:
            again = await client.redrive(dead_letter=letter.seq, decode="text", actor="hank")
            assert (again["new_run_ids"], again["existing_run_ids"]) == ([], [run_id])
            with pytest.raises(ClientError) as caught:
                await client.redrive(dead_letter=other_seq)
            assert caught.value.status == 422
            assert str(caught.value) == (
                "422: this dead letter cannot be re-driven: it is from trigger 'other/event'"
                " (on: event), whose letters cannot be rebuilt into events"
            )
            with pytest.raises(ClientError) as caught:
                await client.redrive(dead_letter=bare_seq)
            assert caught.value.status == 422
            assert str(caught.value).startswith(
                f"422: dead letter {bare_seq} (texts/kafka): this dead letter cannot be"
                " re-driven: its payload lacks a valid partition, offset, key, headers,"
                " timestamp, value_base64"
            )
    runs = await store.list_runs(pipeline=None, limit=100, before=None)
    assert [r.id for r in runs] == [run_id]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"dead_letter": 0}, "dead_letter must be a dead letter's seq (a whole number >= 1)"),
        ({"dead_letter": True}, "dead_letter must be a dead letter's seq"),
        (
            {"dead_letter": 3, "id": "a"},
            "dead_letter re-drives one dead letter: give it without id",
        ),
        ({"dead_letter": 3, "limit": 5}, "dead_letter re-drives one dead letter: give it without"),
        ({"dead_letter": 3, "dry_run": True}, "dry_run does not go with dead_letter"),
        ({"id": "a", "decode": "text"}, "decode goes with dead_letter"),
        ({"dead_letter": 3, "decode": ""}, "decode must be a non-empty string"),
    ],
)
def test_a_bad_dead_letter_request_says_what_is_wrong(body: object, message: str) -> None:
    with pytest.raises(RedriveError) as caught:
        parse_request(body, datetime.now(UTC))
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_dead_letter_request_is_read() -> None:
    asked = parse_request({"dead_letter": 7, "decode": "bytes", "pipeline": "p"}, datetime.now(UTC))
    assert (asked.dead_letter, asked.decode, asked.pipeline, asked.event_id) == (
        7,
        "bytes",
        "p",
        None,
    )
