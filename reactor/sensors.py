"""The Sensor protocol: how a connector watches the world and hands events in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from anyio.abc import TaskStatus

from reactor.clock import Clock
from reactor.events import Event

if TYPE_CHECKING:
    from reactor.store.base import StoredEvent
from reactor.store.records import DeadLetter

__all__ = [
    "EmitResult",
    "Sensor",
    "SensorContext",
    "SensorHealth",
    "SensorHost",
    "sensor_source",
]

HealthState = Literal["starting", "watching", "failing", "stopped"]


def sensor_source(trigger_key: str) -> str:
    """The CloudEvents ``source`` of events a trigger's own sensor emits."""
    return f"reactor/sensors/{trigger_key}"


@dataclass(frozen=True, slots=True)
class EmitResult:
    """The event's stored id and whether it was new (``False``: a duplicate)."""

    event_id: str
    new: bool


@dataclass
class SensorHealth:
    """What ``GET /api/sensors`` shows of one sensor; the context keeps the counts."""

    state: HealthState = "starting"
    message: str = ""
    since: datetime | None = None
    #: New events stored (duplicates not counted).
    events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    last_event_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    restarts: int = 0
    #: How far behind its source the sensor is (Kafka: messages not yet consumed).
    lag: int | None = None
    #: Where the sensor is in its source (a table's watermark, ...), as JSON.
    cursor: Any = None

    def to_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "state": self.state,
            "message": self.message,
            "since": when(self.since),
            "events": self.events,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "last_event_at": when(self.last_event_at),
            "last_error": self.last_error,
            "last_error_at": when(self.last_error_at),
            "restarts": self.restarts,
            "lag": self.lag,
            "cursor": self.cursor,
        }


class SensorHost(Protocol):
    """What the service does for a sensor: store events, cursors and dead letters."""

    async def emit(self, event: Event) -> EmitResult: ...

    async def emit_many(
        self, trigger_key: str, events: Sequence[Event], cursor: Any = None
    ) -> list[EmitResult]: ...

    async def load_cursor(self, trigger_key: str) -> Any | None: ...

    async def save_cursor(self, trigger_key: str, cursor: Any) -> None: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...

    async def last_event(self, source: str) -> StoredEvent | None: ...

    def connection(self, ref: str) -> str: ...


@dataclass
class SensorContext:
    """What a running sensor gets: its identity, folder, clock, and the service's help.

    Every method returns once what it stored is durable, so a sensor may then
    acknowledge its source (commit a Kafka offset, advance a cursor).
    """

    trigger_key: str
    base_dir: Path
    clock: Clock
    host: SensorHost
    env: Mapping[str, str] = field(default_factory=dict)
    health: SensorHealth = field(default_factory=SensorHealth)

    @property
    def source(self) -> str:
        return sensor_source(self.trigger_key)

    def _count(self, results: Sequence[EmitResult]) -> None:
        new = sum(1 for r in results if r.new)
        self.health.events += new
        self.health.duplicates += len(results) - new
        if results:
            self.health.last_event_at = self.clock.now()

    async def emit(self, event: Event) -> EmitResult:
        """Store ``event`` (unless a duplicate) and hand it to the rule engine."""
        result = await self.host.emit(event)
        self._count([result])
        return result

    async def emit_many(self, events: Sequence[Event], cursor: Any = None) -> list[EmitResult]:
        """Store ``events`` and, in the same transaction, ``cursor`` (if not ``None``)."""
        results = await self.host.emit_many(self.trigger_key, events, cursor)
        self._count(results)
        if cursor is not None:
            self.health.cursor = cursor
        return results

    async def load_cursor(self) -> Any | None:
        """The cursor saved last, or ``None``."""
        cursor = await self.host.load_cursor(self.trigger_key)
        self.health.cursor = cursor
        return cursor

    async def save_cursor(self, cursor: Any) -> None:
        await self.host.save_cursor(self.trigger_key, cursor)
        self.health.cursor = cursor

    async def dead_letter(self, reason: str, payload: Any, ref: str | None = None) -> None:
        """Record what could not become an event, and why; the sensor goes on."""
        letter = DeadLetter(self.trigger_key, reason, payload, self.clock.now(), ref)
        await self.host.dead_letter(letter)
        self.health.dead_letters += 1

    async def last_event(self) -> StoredEvent | None:
        """The event this sensor stored last (where a schedule left off)."""
        return await self.host.last_event(self.source)

    def connection(self, ref: str) -> str:
        """The URL of ``connection:`` (inline, or a name in ``reactor.yaml``).

        Raises :class:`reactor.errors.ConnectorError` if it cannot be resolved.
        """
        return self.host.connection(ref)

    def set_health(self, state: HealthState, message: str = "") -> None:
        if state != self.health.state or message != self.health.message:
            self.health.state = state
            self.health.message = message
            self.health.since = self.clock.now()
        if state == "failing" and message:
            self.health.last_error = message
            self.health.last_error_at = self.clock.now()


class Sensor(Protocol):
    """Watches one trigger's source until cancelled.

    Calls ``task_status.started()`` once supervised (never waits for the
    source to be up first), then emits through ``ctx.emit``, which returns once
    the event is durable, so the sensor may acknowledge its source.
    """

    async def run(self, ctx: SensorContext, *, task_status: TaskStatus[None]) -> None: ...
