"""Reactor: an event-driven data orchestrator."""

from typing import TYPE_CHECKING, Any

from reactor.actions import Action, TaskRequest
from reactor.clock import Clock, FakeClock, SystemClock
from reactor.errors import (
    ActionError,
    AdmissionError,
    ClientError,
    ConnectorError,
    ExpressionError,
    ParamError,
    ReactorError,
    SpecError,
    SpecErrorGroup,
    StoreError,
    TaskTimeout,
)
from reactor.events import Event, InvalidEvent
from reactor.executor import RunObserver
from reactor.pipelines import Pipeline, load_folder, load_pipeline
from reactor.registry import Registry, TaskKind, TriggerKind, default_registry
from reactor.sensors import EmitResult, Sensor, SensorContext
from reactor.service import PublishResult, Reactor, Settings
from reactor.specs import EventFilter, TaskSpec, TriggerSpec
from reactor.store import RunRecord, SqliteStore, Store, TaskRecord, open_store

if TYPE_CHECKING:
    from reactor.client import AsyncClient, Client, Published
    from reactor.store.postgres import PostgresStore

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The PostgreSQL driver is imported only when it is asked for.
    if name == "PostgresStore":
        from reactor.store.postgres import PostgresStore

        return PostgresStore
    # httpx is imported only by programs that use the client, not by `reactor serve`.
    if name in ("AsyncClient", "Client", "Published"):
        import reactor.client

        return getattr(reactor.client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Action",
    "ActionError",
    "AdmissionError",
    "AsyncClient",
    "Client",
    "ClientError",
    "Clock",
    "ConnectorError",
    "EmitResult",
    "Event",
    "EventFilter",
    "ExpressionError",
    "FakeClock",
    "InvalidEvent",
    "ParamError",
    "Pipeline",
    "PostgresStore",
    "PublishResult",
    "Published",
    "Reactor",
    "ReactorError",
    "Registry",
    "RunObserver",
    "RunRecord",
    "Sensor",
    "SensorContext",
    "Settings",
    "SpecError",
    "SpecErrorGroup",
    "SqliteStore",
    "Store",
    "StoreError",
    "SystemClock",
    "TaskKind",
    "TaskRecord",
    "TaskRequest",
    "TaskSpec",
    "TaskTimeout",
    "TriggerKind",
    "TriggerSpec",
    "default_registry",
    "load_folder",
    "load_pipeline",
    "open_store",
]
