"""A Kafka dead letter becomes the very event its message would have been."""

from __future__ import annotations

import json

import pytest
from aiokafka.structs import ConsumerRecord

from connectors.kafka import _dead_payload, letter_event, message_event

SOURCE = "reactor/sensors/p/kafka"


def record(value: bytes | None, key: bytes | None = b"\xff\x01") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        "orders", 2, 17, 1_764_000_000_123, 0, key, value, None, 0, 0, [("h", b"v")]
    )


@pytest.mark.parametrize(
    ("value", "decode"),
    [(b'{"n": 1}', "json"), (b"{oops", "text"), (b"\x80\x81", "bytes"), (None, "json")],
)
def test_a_letter_rebuilds_the_event_of_its_message(value: bytes | None, decode: str) -> None:
    message = record(value)
    # The payload goes through the store as JSON.
    payload = json.loads(json.dumps(_dead_payload(message)))
    assert letter_event(payload, SOURCE, decode) == message_event(message, SOURCE, decode)


@pytest.mark.parametrize(
    ("payload", "decode", "message"),
    [
        ({}, "json", "this dead letter cannot be re-driven: its payload lacks a valid topic,"),
        ([1], "json", "this dead letter cannot be re-driven: its payload lacks a valid topic,"),
        ({"partition": True}, "json", "this dead letter cannot be re-driven"),
        ({"timestamp": "yesterday"}, "json", "this dead letter cannot be re-driven: Invalid"),
        ({"value_base64": "!!"}, "json", "this dead letter cannot be re-driven:"),
        ({}, "yaml", "decode must be json, text or bytes, got 'yaml'"),
        ({"value_base64": "gIE="}, "text", "it still does not decode as text: value is not UTF-8"),
    ],
)
def test_a_letter_that_cannot_be_rebuilt_says_why(
    payload: object, decode: str, message: str
) -> None:
    whole = _dead_payload(record(b"{}"))
    given = {**whole, **payload} if isinstance(payload, dict) and payload else payload
    with pytest.raises(ValueError) as caught:
        letter_event(given, SOURCE, decode)
    assert str(caught.value).startswith(message), str(caught.value)
