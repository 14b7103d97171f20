"""The Sensor protocol: how a connector watches the world and hands events in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from anyio.abc import TaskStatus

from reactor.clock import Clock
from reactor.events import Event

if TYPE_CHECKING:
    from reactor.store.base import StoredEvent

__all__ = ["EmitResult", "Sensor", "SensorContext", "SensorHealth", "sensor_source"]

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
    state: HealthState = "starting"
    message: str = ""
    since: datetime | None = None
    events: int = 0


@dataclass
class SensorContext:
    """What a running sensor gets: its identity, folder, clock and ``emit``."""

    trigger_key: str
    base_dir: Path
    clock: Clock
    emit: Callable[[Event], Awaitable[EmitResult]]
    health: SensorHealth = field(default_factory=SensorHealth)
    #: The last event this sensor emitted that was stored (where a schedule left off).
    last_event: Callable[[], Awaitable[StoredEvent | None]] | None = None

    @property
    def source(self) -> str:
        return sensor_source(self.trigger_key)

    def set_health(self, state: HealthState, message: str = "") -> None:
        if state != self.health.state or message != self.health.message:
            self.health.state = state
            self.health.message = message
            self.health.since = self.clock.now()


class Sensor(Protocol):
    """Watches one trigger's source until cancelled.

    Calls ``task_status.started()`` once supervised (never waits for the
    source to be up first), then emits through ``ctx.emit``, which returns once
    the event is durable, so the sensor may acknowledge its source.
    """

    async def run(self, ctx: SensorContext, *, task_status: TaskStatus[None]) -> None: ...
