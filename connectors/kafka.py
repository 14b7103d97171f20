"""``on: kafka``: a run per message of a topic, committed only once its event is durable."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anyio
from anyio.abc import TaskStatus
from pydantic import Field, field_validator, model_validator

from connectors.kafka_common import (
    KafkaSecurity,
    bootstrap_servers,
    check_connection,
    client_options,
    text_or_base64,
)
from reactor.durations import Duration
from reactor.errors import ConnectorError
from reactor.events import Event
from reactor.sensors import SensorContext, sensor_source
from reactor.specs import EventFilter, TriggerSpec

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

__all__ = [
    "KAFKA_MESSAGE",
    "KafkaSensor",
    "KafkaTriggerSpec",
    "attributes_event",
    "decode_value",
    "letter_event",
    "message_event",
    "message_ref",
]

KAFKA_MESSAGE = "reactor.kafka.message"

logger = logging.getLogger("reactor.kafka")
#: How long a commit may take (also at a stop) before its messages are left to redelivery.
_COMMIT_TIMEOUT = 10.0

#: How long one fetch waits for messages when there are none (the loop then checks health).
_IDLE_FETCH_MS = 1000
#: While idle, the broker is asked this often whether it is still there.
_PROBE_EVERY = 5.0
#: How often a topic that does not exist yet is looked for.
_TOPIC_POLL = 1.0
#: How long a probe or a shutdown step may take before it counts as failed.
_NETWORK_TIMEOUT = 5.0
#: Reconnecting after the broker went away: first delay, then doubled up to the cap.
_RETRY_FIRST, _RETRY_CAP = 0.5, 10.0


class KafkaTriggerSpec(TriggerSpec):
    """``on: kafka``: ``connection``, ``topic`` or ``pattern``, ``group``, ``from``, decoding."""

    on: Literal["kafka"]
    connection: str = Field(min_length=1)
    topic: list[str] | None = Field(None, min_length=1)
    pattern: str | None = Field(None, min_length=1)
    group: str | None = Field(None, min_length=1)
    from_: Literal["latest", "earliest"] = Field("latest", alias="from")
    decode: Literal["json", "text", "bytes"] = "json"
    #: A topic that gets a copy of every message that could not be decoded.
    dlq: str | None = Field(None, min_length=1)
    #: At most this many messages are fetched, stored and committed together.
    fetch_batch: int = Field(500, ge=1, le=10_000)
    #: How long the broker may hold a fetch to fill it: low keeps latency low.
    fetch_wait: Duration = 0.005
    #: A consumer silent this long leaves the group; a join waits about half of it.
    session_timeout: Duration = 10.0
    security: KafkaSecurity = KafkaSecurity()

    has_sensor: ClassVar[bool] = True

    _connection = field_validator("connection")(check_connection)

    @field_validator("topic", mode="before")
    @classmethod
    def _single_topic(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("topic")
    @classmethod
    def _topic_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", name):
                raise ValueError(f"{name!r} is not a Kafka topic name (letters, digits, . _ -)")
        return value

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern: {value!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("fetch_wait")
    @classmethod
    def _fetch_wait_range(cls, value: float) -> float:
        if not 0 <= value <= 10:
            raise ValueError("fetch_wait: must be between 0s and 10s")
        return value

    @field_validator("session_timeout")
    @classmethod
    def _session_range(cls, value: float) -> float:
        if not 1 <= value <= 300:
            raise ValueError("session_timeout: must be between 1s and 5m")
        return value

    @model_validator(mode="after")
    def _topic_or_pattern(self) -> KafkaTriggerSpec:
        if (self.topic is None) == (self.pattern is None):
            found = "both" if self.topic is not None else "neither"
            raise ValueError(f"a kafka trigger needs exactly one of topic: or pattern: ({found})")
        return self

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(KAFKA_MESSAGE, sensor_source(trigger_key))

    def letter_event(self, payload: Any, source: str, decode: str | None) -> Event | None:
        return letter_event(payload, source, decode or self.decode)

    def group_id(self, trigger_key: str) -> str:
        """The consumer group: ``group:``, else one per trigger (``reactor.<pipeline>.<id>``)."""
        return self.group or "reactor." + trigger_key.replace("/", ".")


class UndecodableValue(ValueError):
    """A message value that ``decode:`` cannot turn into event data."""


def decode_value(raw: bytes | None, decode: str) -> Any:
    """The event data of a message value: JSON (default), UTF-8 text, or base64 of the bytes."""
    if raw is None:
        return None  # a tombstone: no value at all
    if decode == "bytes":
        return base64.b64encode(raw).decode("ascii")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableValue(f"value is not UTF-8 text (byte {exc.start})") from None
    if decode == "text":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UndecodableValue(f"value is not JSON: {exc}") from None


def message_ref(message: ConsumerRecord[bytes, bytes]) -> str:
    """``topic/partition/offset``: where a message is, and its event's id."""
    return f"{message.topic}/{message.partition}/{message.offset}"


def _attributes(message: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": text_or_base64(message.key),
        # Kafka allows a header name twice; the last one wins here.
        "headers": {name: text_or_base64(value) for name, value in message.headers},
        "timestamp": _timestamp(message.timestamp).isoformat(),
    }


def _timestamp(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)


def message_event(message: ConsumerRecord[bytes, bytes], source: str, decode: str) -> Event:
    """The event of one message; raises :class:`UndecodableValue`."""
    return attributes_event(_attributes(message), message.value, source, decode)


def attributes_event(
    attributes: dict[str, Any], value: bytes | None, source: str, decode: str
) -> Event:
    """The event of a message given as its attributes (topic, partition, offset, key,
    headers, timestamp: what a dead letter keeps) and raw value; raises
    :class:`UndecodableValue`."""
    return Event(
        type=KAFKA_MESSAGE,
        source=source,
        id=f"{attributes['topic']}/{attributes['partition']}/{attributes['offset']}",
        time=datetime.fromisoformat(attributes["timestamp"]),
        subject=attributes["topic"],
        data=decode_value(value, decode),
        extensions={"kafka": attributes},
    )


_DECODINGS = ("json", "text", "bytes")
_LETTER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "topic": str,
    "partition": int,
    "offset": int,
    "key": (str, type(None)),
    "headers": dict,
    "timestamp": str,
}


def letter_event(payload: Any, source: str, decode: str) -> Event:
    """The event a dead letter's payload (see ``_dead_payload``) stands for, its value read
    with ``decode``; :class:`ValueError` names what is missing or why it does not decode."""
    if decode not in _DECODINGS:
        raise ValueError(f"decode must be json, text or bytes, got {decode!r}")
    if not isinstance(payload, dict):
        payload = {}
    wrong = [
        name
        for name, kind in _LETTER_FIELDS.items()
        if name not in payload
        or not isinstance(payload[name], kind)
        or (kind is int and isinstance(payload[name], bool))
    ]
    if "value_base64" not in payload or not isinstance(payload["value_base64"], str | None):
        wrong.append("value_base64")
    if wrong:
        raise ValueError(
            "this dead letter cannot be re-driven: its payload lacks a valid"
            f" {', '.join(wrong)} (a Kafka message's dead letter has"
            f" {', '.join([*_LETTER_FIELDS, 'value_base64'])})"
        )
    attributes = {name: payload[name] for name in _LETTER_FIELDS}
    try:
        datetime.fromisoformat(attributes["timestamp"])
        encoded = payload["value_base64"]
        value = None if encoded is None else base64.b64decode(encoded, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"this dead letter cannot be re-driven: {exc}") from None
    try:
        return attributes_event(attributes, value, source, decode)
    except UndecodableValue as exc:
        raise ValueError(f"it still does not decode as {decode}: {exc}") from None


def _dead_payload(message: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    raw = message.value
    return {
        **_attributes(message),
        "value_base64": base64.b64encode(raw).decode("ascii") if raw is not None else None,
    }


@dataclass
class _Connected:
    """Set once the consumer reached the broker, so a later failure retries from the start."""

    value: bool = False


class KafkaSensor:
    """Consumes one trigger's topics in its consumer group.

    Each fetched batch becomes events stored in one transaction; only then are
    the offsets committed (auto-commit is off). A crash in between redelivers
    the batch, and the event id ``topic/partition/offset`` makes every
    redelivered message a duplicate that starts no second run.
    """

    def __init__(self, spec: KafkaTriggerSpec) -> None:
        self.spec = spec
        self._positions: dict[TopicPartition, int] = {}

    async def run(self, ctx: SensorContext, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        servers = bootstrap_servers(ctx.connection(self.spec.connection))
        options = client_options(self.spec.security, ctx.base_dir, ctx.env)
        delay = _RETRY_FIRST
        while True:
            connected = _Connected()
            try:
                await self._consume(ctx, servers, options, connected)
            except ConnectorError:
                raise
            except Exception as exc:
                from aiokafka.errors import KafkaError

                if not isinstance(exc, KafkaError | OSError):
                    raise
                if connected.value:
                    delay = _RETRY_FIRST
                ctx.set_health(
                    "failing",
                    f"Kafka at {','.join(servers)}: {type(exc).__name__}: {exc}; retrying",
                )
                logger.warning("sensor %s: %s", ctx.trigger_key, ctx.health.message)
            await ctx.clock.sleep(delay)
            delay = min(delay * 2, _RETRY_CAP)

    def _consumer(
        self, ctx: SensorContext, servers: list[str], options: dict[str, Any]
    ) -> AIOKafkaConsumer:
        from aiokafka import AIOKafkaConsumer

        session_ms = int(self.spec.session_timeout * 1000)
        return AIOKafkaConsumer(
            bootstrap_servers=servers,
            group_id=self.spec.group_id(ctx.trigger_key),
            client_id=f"reactor-{ctx.trigger_key}",
            enable_auto_commit=False,
            auto_offset_reset=self.spec.from_,
            fetch_max_wait_ms=int(self.spec.fetch_wait * 1000),
            max_poll_records=self.spec.fetch_batch,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 3),
            # A reconnecting client should not wait long between attempts.
            retry_backoff_ms=100,
            request_timeout_ms=max(30_000, session_ms + 5_000),
            **options,
        )

    async def _consume(
        self,
        ctx: SensorContext,
        servers: list[str],
        options: dict[str, Any],
        connected: _Connected,
    ) -> None:
        consumer = self._consumer(ctx, servers, options)
        producer: AIOKafkaProducer | None = None
        try:
            await consumer.start()
            connected.value = True
            await self._wait_for_topics(ctx, consumer, servers)
            if self.spec.topic is not None:
                consumer.subscribe(topics=self.spec.topic)
            else:
                consumer.subscribe(pattern=self.spec.pattern)
            what = ", ".join(self.spec.topic or []) or f"pattern {self.spec.pattern!r}"
            ctx.set_health("starting", f"joining group {self.spec.group_id(ctx.trigger_key)}")
            last_probe = ctx.clock.monotonic()
            while True:
                batch = await consumer.getmany(
                    timeout_ms=_IDLE_FETCH_MS, max_records=self.spec.fetch_batch
                )
                if batch:
                    if self.spec.dlq is not None and producer is None:
                        producer = await self._producer(servers, options)
                    await self._handle(ctx, consumer, producer, batch)
                    self._update_lag(ctx, consumer)
                    if ctx.health.state != "watching":
                        await self._show_watching(ctx, consumer, what)
                    continue
                if ctx.health.state == "starting" and consumer.assignment():
                    await self._show_watching(ctx, consumer, what)
                if ctx.clock.monotonic() - last_probe >= _PROBE_EVERY:
                    last_probe = ctx.clock.monotonic()
                    await self._probe(ctx, consumer, servers, what)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_NETWORK_TIMEOUT):
                if producer is not None:
                    await producer.stop()
                await consumer.stop()

    async def _producer(self, servers: list[str], options: dict[str, Any]) -> AIOKafkaProducer:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", **options)
        await producer.start()
        return producer

    async def _wait_for_topics(
        self, ctx: SensorContext, consumer: AIOKafkaConsumer, servers: list[str]
    ) -> None:
        """Named topics must exist first: subscribing would create them on some brokers."""
        if self.spec.topic is None:
            return
        while True:
            with anyio.fail_after(_NETWORK_TIMEOUT * 2):
                existing = await consumer.topics()
            missing = [t for t in self.spec.topic if t not in existing]
            if not missing:
                return
            names = ", ".join(repr(t) for t in missing)
            ctx.set_health(
                "failing",
                f"topic {names} does not exist on {','.join(servers)}; waiting for it",
            )
            await ctx.clock.sleep(_TOPIC_POLL)

    async def _show_watching(
        self, ctx: SensorContext, consumer: AIOKafkaConsumer, what: str
    ) -> None:
        # Resolving the start offsets now (``from:``) means anything produced from here
        # on is seen, even with ``from: latest``.
        for tp in consumer.assignment():
            self._positions[tp] = await consumer.position(tp)
        self._update_lag(ctx, consumer)
        partitions = len(consumer.assignment())
        ctx.set_health("watching", f"{what}: {partitions} partition(s) assigned")

    async def _probe(
        self, ctx: SensorContext, consumer: AIOKafkaConsumer, servers: list[str], what: str
    ) -> None:
        """While idle: is the broker still there, and how far behind are we?"""
        from aiokafka.errors import KafkaError

        assigned = list(consumer.assignment())
        try:
            with anyio.fail_after(_NETWORK_TIMEOUT):
                ends = await consumer.end_offsets(assigned) if assigned else {}
                if not assigned:
                    await consumer.topics()
        except (KafkaError, OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            ctx.set_health("failing", f"Kafka at {','.join(servers)} unreachable: {reason}")
            return
        if ends:
            ctx.health.lag = sum(
                max(0, end - self._positions.get(tp, end)) for tp, end in ends.items()
            )
        if ctx.health.state == "failing":
            ctx.set_health("starting", "reconnected")
        if assigned:
            await self._show_watching(ctx, consumer, what)

    def _update_lag(self, ctx: SensorContext, consumer: AIOKafkaConsumer) -> None:
        lag = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            position = self._positions.get(tp)
            if high is not None and position is not None:
                lag += max(0, high - position)
        ctx.health.lag = lag

    async def _handle(
        self,
        ctx: SensorContext,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer | None,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """Store the batch's events, record what could not be decoded, then commit."""
        events: list[Event] = []
        dead: list[tuple[str, ConsumerRecord[bytes, bytes]]] = []
        offsets: dict[TopicPartition, int] = {}
        for tp, messages in batch.items():
            for message in messages:
                try:
                    events.append(message_event(message, ctx.source, self.spec.decode))
                except UndecodableValue as exc:
                    dead.append((str(exc), message))
            if messages:
                offsets[tp] = messages[-1].offset + 1
        if events:
            await ctx.emit_many(events)
        for reason, message in dead:
            await ctx.dead_letter(reason, _dead_payload(message), ref=message_ref(message))
            if producer is not None and self.spec.dlq is not None:
                await self._send_dlq(producer, self.spec.dlq, reason, message)
        # Everything above is durable: only now may the broker forget these messages.
        await self._commit(ctx, consumer, offsets)
        self._positions.update(offsets)

    async def _send_dlq(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        reason: str,
        message: ConsumerRecord[bytes, bytes],
    ) -> None:
        headers = [
            *message.headers,
            ("reactor.reason", reason.encode()),
            ("reactor.source", message_ref(message).encode()),
        ]
        await producer.send_and_wait(topic, message.value, key=message.key, headers=headers)

    async def _commit(
        self, ctx: SensorContext, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]
    ) -> None:
        from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

        try:
            # Shielded and bounded: the events are durable already, so a stop waits a moment
            # for the commit rather than leaving aiokafka's request to fail unobserved once
            # the connection closes.
            with anyio.CancelScope(shield=True), anyio.move_on_after(_COMMIT_TIMEOUT):
                await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The group rebalanced or the broker went away: whoever reads these partitions
            # next is sent the messages again, and their ids make them duplicates. Nothing
            # is lost.
            logger.info("sensor %s: offsets not committed (%s)", ctx.trigger_key, exc)
