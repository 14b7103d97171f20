"""``kafka:`` tasks: produce one message (topic, key, headers and value templated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import anyio
from pydantic import Field, field_validator

from connectors.kafka_common import (
    KafkaSecurity,
    bootstrap_servers,
    check_connection,
    client_options,
)
from reactor.actions import TaskRequest
from reactor.errors import ActionError, ConnectorError, ExpressionError
from reactor.expressions import CompiledValue
from reactor.specs import Spec, TaskSpec

__all__ = ["KafkaAction", "KafkaMessageSpec", "KafkaTaskSpec"]

#: How long producing one message may take before the attempt fails.
_SEND_TIMEOUT = 30.0


class KafkaMessageSpec(Spec):
    """``kafka: {topic, key, value, headers}``: every field may be a template."""

    topic: str = Field(min_length=1)
    key: str | None = None
    #: Text is sent as UTF-8; anything else (an object, a list, a number) as JSON.
    value: Any = None
    headers: dict[str, str] = {}
    partition: int | None = Field(None, ge=0)


class KafkaTaskSpec(TaskSpec):
    """A task that produces one message to ``connection:`` (and waits for the broker's ack)."""

    type_key: ClassVar[str] = "kafka"

    kafka: KafkaMessageSpec
    connection: str = Field(min_length=1)
    security: KafkaSecurity = KafkaSecurity()

    _connection = field_validator("connection")(check_connection)


def _encode_value(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, default=str, separators=(",", ":")).encode("utf-8")


class KafkaAction:
    """Renders the message, sends it with ``acks=all`` and returns where it landed."""

    def __init__(self, spec: KafkaTaskSpec, base_dir: Path) -> None:
        self.spec = spec
        self.base_dir = base_dir
        try:
            self.message = CompiledValue(spec.kafka.model_dump())
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("kafka",)) from exc

    async def execute(self, request: TaskRequest) -> Any:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        try:
            rendered = self.message.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render the message: {exc}") from exc
        topic = str(rendered["topic"])
        key = rendered.get("key")
        headers = [(str(k), str(v).encode()) for k, v in (rendered.get("headers") or {}).items()]
        env = request.scope.get("env") or {}
        try:
            url = (
                request.connection(self.spec.connection)
                if request.connection is not None
                else self.spec.connection
            )
            servers = bootstrap_servers(url)
            options = client_options(self.spec.security, self.base_dir, env)
        except (ConnectorError, ValueError) as exc:
            raise ActionError(str(exc)) from exc
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", **options)
        try:
            with anyio.fail_after(_SEND_TIMEOUT):
                await producer.start()
                try:
                    sent = await producer.send_and_wait(
                        topic,
                        _encode_value(rendered.get("value")),
                        key=None if key is None else str(key).encode("utf-8"),
                        headers=headers or None,
                        partition=rendered.get("partition"),
                    )
                finally:
                    with anyio.CancelScope(shield=True):
                        await producer.stop()
        except TimeoutError:
            raise ActionError(
                f"Kafka at {','.join(servers)}: no answer within {_SEND_TIMEOUT:g}s"
            ) from None
        except (KafkaError, OSError) as exc:
            raise ActionError(
                f"Kafka at {','.join(servers)}: cannot produce to {topic!r}:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        request.log("system", f"produced {topic}/{sent.partition}/{sent.offset}")
        return {"topic": topic, "partition": sent.partition, "offset": sent.offset}
