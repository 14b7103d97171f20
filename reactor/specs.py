"""Pydantic models of pipeline files: what a user wrote, frozen and strict."""

from __future__ import annotations

import fnmatch
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from reactor.assets import declared_asset
from reactor.durations import Duration
from reactor.errors import ReactorError
from reactor.events import Event

__all__ = [
    "HOOK_ATTRIBUTE",
    "BatchSpec",
    "ConcurrencySpec",
    "DebounceSpec",
    "DedupeSpec",
    "EventFilter",
    "EventTriggerSpec",
    "HookReceiver",
    "HookRequest",
    "HookResult",
    "HttpIngress",
    "IngressUnavailable",
    "NeedSpec",
    "PatternSpec",
    "PipelineTriggerSpec",
    "RateSpec",
    "RetryOnSpec",
    "RetrySpec",
    "RunIf",
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
    """``retries: {max, backoff, initial, max_delay, jitter}``: up to ``max`` more attempts.

    ``retries: N`` is ``{max: N}`` (fixed 1 s delay); ``delay:`` is accepted for ``initial:``.
    """

    max: int = Field(ge=0, le=1000)
    backoff: Literal["fixed", "exponential"] = "fixed"
    initial: Duration = 1.0
    #: Exponential delays stop growing here.
    max_delay: Duration | None = Field(None, gt=0)
    #: Each delay is drawn at random between half of it and all of it.
    jitter: bool = False

    @model_validator(mode="before")
    @classmethod
    def _delay_is_initial(cls, value: Any) -> Any:
        if isinstance(value, dict) and "delay" in value:
            if "initial" in value:
                raise ValueError("write initial: or delay: (the same thing), not both")
            value = {("initial" if k == "delay" else k): v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _max_delay_not_below_initial(self) -> RetrySpec:
        if self.max_delay is not None and self.max_delay < self.initial:
            raise ValueError("max_delay must be at least initial")
        return self


class RetryOnSpec(Spec):
    """``retry_on:``: which failed attempts are retried (any one matching is enough).

    Written as a list (integers are exit codes, names are exception types, ``timeout``
    is a timed-out attempt), an expression, or ``{exit_codes, exceptions, timeout, when}``.
    """

    exit_codes: list[int] = []
    exceptions: list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$")]] = []
    timeout: bool = False
    when: str | None = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"when": value}
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list):
            codes = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
            names = [v for v in value if not (isinstance(v, int) and not isinstance(v, bool))]
            return {
                "exit_codes": codes,
                "exceptions": [n for n in names if n != "timeout"],
                "timeout": "timeout" in names,
            }
        return value

    @model_validator(mode="after")
    def _says_something(self) -> RetryOnSpec:
        if not (self.exit_codes or self.exceptions or self.timeout or self.when):
            raise ValueError(
                "retry_on names nothing to retry; remove it or list exit codes,"
                " exception types, timeout, or give an expression"
            )
        return self


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


class BatchSpec(Spec):
    """``batch: {max: 100, window: 30s}``: one run per batch, when either limit is reached."""

    max: int = Field(ge=1, le=100_000)
    window: Duration = Field(gt=0)


class DebounceSpec(Spec):
    """``debounce: 10s`` or ``{quiet: 10s, max_wait: 5m}``: one run once a burst is quiet."""

    quiet: Duration = Field(gt=0)
    #: However long the burst, a run starts at most this long after its first event.
    max_wait: Duration | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _wait_longer_than_quiet(self) -> DebounceSpec:
        if self.max_wait is not None and self.max_wait < self.quiet:
            raise ValueError("max_wait must be at least as long as quiet")
        return self


class DedupeSpec(Spec):
    """``dedupe: {key: "{{ event.data.path }}", for: 1h}``: a key seen in the period starts
    nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    key: str = Field(min_length=1)
    for_: Duration = Field(alias="for", gt=0)


class RateSpec(Spec):
    """``rate: {max: 10, per: 1m}``: at most ``max`` runs per period; the rest wait or go."""

    max: int = Field(ge=1, le=1_000_000)
    per: Duration = Field(gt=0)
    over_limit: Literal["queue", "drop"] = "queue"


class TriggerSpec(Spec):
    """Fields every trigger has; each kind adds its own and names itself in ``on``."""

    on: str
    id: str | None = Field(None, pattern=ID_PATTERN)
    when: str | None = None
    params: dict[str, Any] = {}
    #: Grouping and limits, for every kind (reactor/grouping.py).
    batch: BatchSpec | None = None
    debounce: DebounceSpec | None = None
    dedupe: DedupeSpec | None = None
    rate: RateSpec | None = None

    @field_validator("debounce", mode="before")
    @classmethod
    def _debounce_period(cls, value: Any) -> Any:
        # ``debounce: 10s`` is read as ``debounce: {quiet: 10s}``.
        return {"quiet": value} if isinstance(value, str | int | float) else value

    @model_validator(mode="after")
    def _one_grouping(self) -> TriggerSpec:
        if self.batch is not None and self.debounce is not None:
            raise ValueError("a trigger groups events by batch: or by debounce:, not both")
        return self

    @property
    def groups_events(self) -> bool:
        """Whether a run gets a group of events (``events``) rather than one."""
        return self.batch is not None or self.debounce is not None

    #: Whether this kind needs a sensor running to produce its events.
    has_sensor: ClassVar[bool] = False

    @abstractmethod
    def event_filter(self, trigger_key: str) -> EventFilter:
        """The events this trigger can match; ``trigger_key`` is ``pipeline/trigger-id``."""

    def event_filters(self, trigger_key: str) -> tuple[EventFilter, ...]:
        """Every filter the rule engine files this trigger under (one but for a
        correlation, which has one per pattern)."""
        return (self.event_filter(trigger_key),)

    def accepts(self, event: Event) -> bool:
        """A finer check than the filter, for kinds that need one (a file pattern)."""
        return True

    def letter_event(self, payload: Any, source: str, decode: str | None) -> Event | None:
        """The event a dead letter of this trigger's sensor stands for, rebuilt from the
        letter's ``payload`` as the sensor builds it (``decode`` overrides how its value is
        read); ``None`` for a kind whose letters cannot be rebuilt (the default).

        Raises :class:`ValueError` naming why this letter cannot become an event.
        """
        return None


class PatternSpec(Spec):
    """One event a correlation waits for: ``{type: ..., source: ..., when: ...}``."""

    type: str = Field(min_length=1)
    source: str | None = None
    when: str | None = None

    @property
    def filter(self) -> EventFilter:
        return EventFilter(self.type, self.source)


def _internal_type_allowed(pattern: str, event: Event) -> bool:
    # Run, task and trigger events match only a type written for them (``reactor.run.*``,
    # ``reactor.task.failed``): a broad glob such as "*" would otherwise start a run
    # whenever a run or task ends, its own included, without end.
    for prefix in INTERNAL_EVENT_PREFIXES:
        if event.type.startswith(prefix):
            return pattern.startswith(prefix)
    return True


class EventTriggerSpec(TriggerSpec):
    """``on: event``: any published event whose type (and source) match these globs, or
    (``all_of:``) a group of events, one of each pattern, sharing a ``key`` ``within`` a
    period."""

    on: Literal["event"]
    type: str | None = Field(None, min_length=1)
    source: str | None = None
    all_of: list[PatternSpec] | None = Field(None, min_length=2)
    key: str | None = Field(None, min_length=1)
    within: Duration | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _single_or_correlated(self) -> EventTriggerSpec:
        if self.all_of is None:
            if self.type is None:
                raise ValueError("on: event needs type: (a glob) or all_of: (a correlation)")
            if self.key is not None or self.within is not None:
                raise ValueError("key: and within: belong to a correlation (all_of:)")
            return self
        if self.type is not None or self.source is not None:
            raise ValueError(
                "all_of: lists each event's type: and source:; leave them out of the trigger"
            )
        if self.key is None or self.within is None:
            raise ValueError(
                'all_of: needs key: (the template that joins events, "{{ event.data.id }}")'
                " and within: (how long a group waits for its other events)"
            )
        if self.groups_events:
            raise ValueError("a correlation (all_of:) cannot also have batch: or debounce:")
        return self

    @property
    def correlates(self) -> bool:
        return self.all_of is not None

    def event_filter(self, trigger_key: str) -> EventFilter:
        if self.all_of is None:
            assert self.type is not None
            return EventFilter(self.type, self.source)
        types = {p.type for p in self.all_of}
        sources = {p.source for p in self.all_of}
        # One filter indexes the trigger; ``accepts`` then checks each pattern.
        return EventFilter(
            types.pop() if len(types) == 1 else "*",
            sources.pop() if len(sources) == 1 else None,
        )

    def event_filters(self, trigger_key: str) -> tuple[EventFilter, ...]:
        if self.all_of is None:
            return (self.event_filter(trigger_key),)
        return tuple(dict.fromkeys(p.filter for p in self.all_of))

    def accepts(self, event: Event) -> bool:
        if self.all_of is None:
            assert self.type is not None
            return _internal_type_allowed(self.type, event)
        return any(
            p.filter.matches(event) and _internal_type_allowed(p.type, event) for p in self.all_of
        )


#: Run events: ``reactor.run.<status>`` from ``reactor/pipelines/<pipeline>``, id = the run id.
RUN_EVENT_PREFIX = "reactor.run."
RunEndStatus = Literal["succeeded", "failed", "cancelled"]
#: Task events: ``reactor.task.<status>`` from the same source, id ``run/task/attempt``.
TASK_EVENT_PREFIX = "reactor.task."
#: What triggers themselves record: ``reactor.trigger.correlation_timeout``, ...
TRIGGER_EVENT_PREFIX = "reactor.trigger."
#: Data-quality check results: ``reactor.check.passed | warned | failed``,
#: id ``run/task/attempt/check``.
CHECK_EVENT_PREFIX = "reactor.check."
#: A task wrote an asset: ``reactor.asset.updated`` (reactor/assets.py).
ASSET_EVENT_PREFIX = "reactor.asset."
INTERNAL_EVENT_PREFIXES = (
    RUN_EVENT_PREFIX,
    TASK_EVENT_PREFIX,
    TRIGGER_EVENT_PREFIX,
    CHECK_EVENT_PREFIX,
    ASSET_EVENT_PREFIX,
)


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


RunIf = Literal[
    "all_success",
    "at_least_one_success",
    "none_failed",
    "all_done",
    "at_least_one_failed",
    "all_failed",
]


class NeedSpec(Spec):
    """``{task: check, outcome: true}``: wait for ``task``; with ``outcome``, run only on
    that branch of an ``if:`` task."""

    task: str = Field(pattern=ID_PATTERN)
    outcome: bool | None = None


#: An asset in ``inputs:``/``outputs:``: checked (and normalised, unless it is a template)
#: when the file is read, so ``reactor validate`` names the bad one at its line.
DeclaredAsset = Annotated[str, AfterValidator(declared_asset)]


def _need_kind(value: Any) -> str:
    return "<need>" if isinstance(value, dict | NeedSpec) else "<id>"


#: A need written as a task id or as ``{task, outcome}``; errors name only the form used.
Need = Annotated[
    Annotated[str, Tag("<id>")] | Annotated[NeedSpec, Tag("<need>")],
    Discriminator(_need_kind),
]


class TaskSpec(Spec):
    """Fields every task has; each task type adds its own key (``python:``, ``shell:``)."""

    id: str = Field(pattern=ID_PATTERN)
    needs: list[Need] = []
    run_if: RunIf = "all_success"
    retries: RetrySpec | None = None
    retry_on: RetryOnSpec | None = None
    timeout: Duration | None = Field(None, gt=0)
    #: A named pool (``pools:`` in ``reactor.yaml``) whose slots this task shares.
    pool: str | None = Field(None, pattern=NAME_PATTERN)
    #: Assets it reads and writes (URIs or names, templates allowed; docs/lineage.md).
    inputs: list[DeclaredAsset] = []
    outputs: list[DeclaredAsset] = []

    #: The key that names this task type in a file.
    type_key: ClassVar[str] = ""
    #: Where a task type that has a ``connection`` property writes it (for messages).
    connection_loc: ClassVar[tuple[str, ...]] = ("connection",)

    @field_validator("retries", mode="before")
    @classmethod
    def _retries_count(cls, value: Any) -> Any:
        # ``retries: 3`` is read as ``retries: {max: 3}``.
        if isinstance(value, int) and not isinstance(value, bool):
            return {"max": value}
        if value is not None and not isinstance(value, dict | RetrySpec):
            raise ValueError(
                f"retries takes a number (retries: 3) or {{max, backoff, initial, max_delay,"
                f" jitter}}, got {value!r}"
            )
        return value

    @field_validator("needs", mode="before")
    @classmethod
    def _single_need(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value

    @field_validator("inputs", "outputs", mode="before")
    @classmethod
    def _single_asset(cls, value: Any) -> Any:
        # ``outputs: file:///x.csv`` is read as ``outputs: [file:///x.csv]``.
        return [value] if isinstance(value, str) else value

    @property
    def need_specs(self) -> list[NeedSpec]:
        """``needs`` with plain ids as ``{task: id}``."""
        return [NeedSpec(task=n) if isinstance(n, str) else n for n in self.needs]

    @property
    def need_ids(self) -> list[str]:
        return [n.task for n in self.need_specs]


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
