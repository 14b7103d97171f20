"""Pydantic models of pipeline files: what a user wrote, frozen and strict."""

from __future__ import annotations

import fnmatch
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reactor.durations import Duration
from reactor.errors import ReactorError
from reactor.events import Event

__all__ = [
    "HOOK_ATTRIBUTE",
    "ConcurrencySpec",
    "EventFilter",
    "EventTriggerSpec",
    "HookReceiver",
    "HookRequest",
    "HookResult",
    "HttpIngress",
    "IngressUnavailable",
    "PipelineTriggerSpec",
    "RetrySpec",
    "Schedule",
    "Spec",
    "TaskSpec",
    "TriggerSpec",
    "run_event_source",
]

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"


class Spec(BaseModel):
    """Base of every model of user-written configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConcurrencySpec(Spec):
    max_active_runs: int = Field(16, ge=1)
    on_overlap: Literal["queue", "skip", "cancel_running", "allow"] = "queue"


class RetrySpec(Spec):
    """``retries: {max: N}``: up to N more attempts after a failed one."""

    max: int = Field(ge=0, le=1000)
    delay: Duration = 1.0


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What the rule engine indexes a trigger by: event type and source (globs allowed)."""

    type: str
    source: str | None = None

    @staticmethod
    def is_glob(text: str) -> bool:
        return any(c in text for c in "*?[")

    def matches(self, event: Event) -> bool:
        if not fnmatch.fnmatchcase(event.type, self.type):
            return False
        return self.source is None or fnmatch.fnmatchcase(event.source, self.source)


class TriggerSpec(Spec):
    """Fields every trigger has; each kind adds its own and names itself in ``on``."""

    on: str
    id: str | None = Field(None, pattern=ID_PATTERN)
    when: str | None = None
    params: dict[str, Any] = {}

    #: Whether this kind needs a sensor running to produce its events.
    has_sensor: ClassVar[bool] = False

    @abstractmethod
    def event_filter(self, trigger_key: str) -> EventFilter:
        """The events this trigger can match; ``trigger_key`` is ``pipeline/trigger-id``."""

    def accepts(self, event: Event) -> bool:
        """A finer check than the filter, for kinds that need one (a file pattern)."""
        return True


class EventTriggerSpec(TriggerSpec):
    """``on: event``: any published event whose type (and source) match these globs."""

    on: Literal["event"]
    type: str = Field(min_length=1)
    source: str | None = None

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(self.type, self.source)

    def accepts(self, event: Event) -> bool:
        # Run and task ends match only a type written for them (``reactor.run.*``,
        # ``reactor.task.failed``): a broad glob such as "*" would otherwise start a run
        # whenever a run or task ends, its own included, without end.
        for prefix in (RUN_EVENT_PREFIX, TASK_EVENT_PREFIX):
            if event.type.startswith(prefix):
                return self.type.startswith(prefix)
        return True


#: Run events: ``reactor.run.<status>`` from ``reactor/pipelines/<pipeline>``, id = the run id.
RUN_EVENT_PREFIX = "reactor.run."
RunEndStatus = Literal["succeeded", "failed", "cancelled"]
#: Task events: ``reactor.task.<status>`` from the same source, id ``run/task/attempt``.
TASK_EVENT_PREFIX = "reactor.task."


def run_event_source(pipeline: str) -> str:
    """The source of the events a pipeline's runs emit when they end."""
    return f"reactor/pipelines/{pipeline}"


class PipelineTriggerSpec(TriggerSpec):
    """``on: pipeline``: a run of another pipeline ended with one of ``status``."""

    on: Literal["pipeline"]
    pipeline: str = Field(pattern=NAME_PATTERN)
    status: list[RunEndStatus] = Field(["succeeded"], min_length=1)

    @field_validator("status", mode="before")
    @classmethod
    def _single_status(cls, value: Any) -> Any:
        # ``status: failed`` is read as ``status: [failed]``.
        return [value] if isinstance(value, str) else value

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(f"{RUN_EVENT_PREFIX}*", run_event_source(self.pipeline))

    def accepts(self, event: Event) -> bool:
        return event.type.removeprefix(RUN_EVENT_PREFIX) in self.status


class TaskSpec(Spec):
    """Fields every task has; each task type adds its own key (``python:``, ``shell:``)."""

    id: str = Field(pattern=ID_PATTERN)
    needs: list[str] = []
    retries: RetrySpec | None = None
    timeout: Duration | None = None

    #: The key that names this task type in a file.
    type_key: ClassVar[str] = ""

    @field_validator("retries", mode="before")
    @classmethod
    def _retries_count(cls, value: Any) -> Any:
        # ``retries: 3`` is read as ``retries: {max: 3}``.
        if isinstance(value, int) and not isinstance(value, bool):
            return {"max": value}
        return value

    @field_validator("needs", mode="before")
    @classmethod
    def _single_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


@runtime_checkable
class Schedule(Protocol):
    """A trigger that fires at times it can compute: what ``reactor schedule`` lists."""

    timezone: str

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``after``, in the schedule's timezone."""
        ...

    def describe(self) -> str: ...


#: The CloudEvents extension attribute naming the hook an event came through. Only
#: ``POST /hooks/{name}`` sets it (``POST /api/events`` refuses it), so a published event
#: cannot pass itself off as a verified webhook delivery.
HOOK_ATTRIBUTE = "reactorhook"


@dataclass(frozen=True, slots=True)
class HookRequest:
    """An HTTP request to ``POST /hooks/{name}``: headers lower-cased, the body as sent."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class HookResult:
    """Either an event to publish, or an answer given at once (``status``, JSON ``body``)."""

    event: Event | None = None
    status: int = 202
    body: Any = None


class IngressUnavailable(ReactorError):
    """A hook cannot take requests (its secret is missing); ``key`` is the trigger's field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class HookReceiver(Protocol):
    """Turns requests to one hook into events (verifying them first)."""

    #: The largest body accepted, in bytes (413 above it).
    max_body: int

    def receive(self, request: HookRequest, now: datetime) -> HookResult: ...


@runtime_checkable
class HttpIngress(Protocol):
    """A trigger whose events arrive over HTTP at ``POST /hooks/{hook_name}``."""

    @property
    def hook_name(self) -> str: ...

    def ingress_settings(self, base_dir: Path) -> object:
        """What triggers sharing a hook name must agree on (signature, secret, limits)."""
        ...

    def open_ingress(
        self, base_dir: Path, env: Mapping[str, str], default_max_body: int
    ) -> HookReceiver:
        """The receiver, with its secret read; raises :class:`IngressUnavailable`.

        ``default_max_body`` is ``limits.webhook_max_body`` of ``reactor.yaml``.
        """
        ...
