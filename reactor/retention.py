"""Retention: which finished runs and old events a background pass removes from the store."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Protocol

import anyio
from pydantic import Field

from reactor.durations import Duration
from reactor.grouping import Windows
from reactor.specs import Spec

if TYPE_CHECKING:
    from reactor.clock import Clock
    from reactor.config import Config
    from reactor.pipelines import Pipeline
    from reactor.store import Store

__all__ = [
    "DEFAULT_EVERY",
    "PipelineRetentionSpec",
    "Pruned",
    "RetentionPlan",
    "RetentionSpec",
    "RunPolicy",
    "plan_retention",
    "prune",
    "retention_loop",
    "wanted",
]

logger = logging.getLogger("reactor")

#: How often the pass runs when ``retention:`` gives no ``every:``.
DEFAULT_EVERY = 3600.0
#: Runs (or events) removed per transaction: the store's other writers wait at most one batch.
BATCH = 500

# A week of zero-length ages would remove every finished run at once: an age is at least 1 s.
Age = Annotated[Duration, Field(ge=1)]
KeepRuns = Annotated[int, Field(ge=0)]


class PipelineRetentionSpec(Spec):
    """A pipeline's ``retention:``: overrides ``runs``/``keep_runs`` of ``reactor.yaml``."""

    #: Finished runs that ended longer ago than this are removed.
    runs: Age | None = None
    #: The newest N finished runs of the pipeline always stay, however old.
    keep_runs: KeepRuns | None = None


class RetentionSpec(PipelineRetentionSpec):
    """``retention:`` in ``reactor.yaml``; without it nothing is ever removed."""

    #: Events received longer ago than this are removed (unless something still needs them).
    events: Age | None = None
    #: How often the background pass runs.
    every: Annotated[Duration, Field(ge=1)] = DEFAULT_EVERY


@dataclass(frozen=True)
class RunPolicy:
    """What goes of one pipeline's finished runs: those that ended before ``ended_before``
    (``None``: whatever their age) beyond the newest ``keep`` finished ones."""

    ended_before: datetime | None
    keep: int


@dataclass(frozen=True)
class RetentionPlan:
    """One pass: a run policy per pipeline, and the age before which events go."""

    #: ``None``: the pipeline's runs all stay.
    runs: Mapping[str, RunPolicy | None]
    #: The policy of pipelines not in ``runs`` (runs of a pipeline no longer loaded).
    other_runs: RunPolicy | None
    events_before: datetime | None

    def run_policy(self, pipeline: str) -> RunPolicy | None:
        return self.runs.get(pipeline, self.other_runs)

    @property
    def empty(self) -> bool:
        return (
            all(policy is None for policy in self.runs.values())
            and self.other_runs is None
            and self.events_before is None
        )


def _policy(now: datetime, runs: float | None, keep_runs: int | None) -> RunPolicy | None:
    if runs is None and keep_runs is None:
        return None
    ended_before = now - timedelta(seconds=runs) if runs is not None else None
    return RunPolicy(ended_before, keep_runs or 0)


def plan_retention(
    now: datetime,
    settings: RetentionSpec | None,
    pipelines: Mapping[str, PipelineRetentionSpec | None],
) -> RetentionPlan:
    """What a pass at ``now`` removes; a pipeline's own ``runs``/``keep_runs`` win over
    the settings' (each on its own: a pipeline giving only ``keep_runs`` keeps their age)."""
    runs = settings.runs if settings is not None else None
    keep_runs = settings.keep_runs if settings is not None else None
    policies: dict[str, RunPolicy | None] = {}
    for name, own in pipelines.items():
        given = own.model_fields_set if own is not None else set()
        policies[name] = _policy(
            now,
            own.runs if own is not None and "runs" in given else runs,
            own.keep_runs if own is not None and "keep_runs" in given else keep_runs,
        )
    events = settings.events if settings is not None else None
    return RetentionPlan(
        policies,
        _policy(now, runs, keep_runs),
        now - timedelta(seconds=events) if events is not None else None,
    )


def wanted(
    settings: RetentionSpec | None, pipelines: Iterable[PipelineRetentionSpec | None]
) -> bool:
    """Whether anything asks for retention (else no pass ever runs)."""
    return settings is not None or any(own is not None for own in pipelines)


@dataclass
class Pruned:
    """What one pass removed."""

    runs: int = 0
    events: int = 0
    log_lines: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"retention: removed {self.runs} runs, {self.events} events,"
            f" {self.log_lines} log lines in {self.seconds:.2f}s"
        )


async def prune(store: Store, plan: RetentionPlan, *, batch: int = BATCH) -> Pruned:
    """Remove what ``plan`` says, ``batch`` rows per transaction, yielding in between."""
    pruned = Pruned()
    if plan.empty:
        return pruned
    for pipeline in await store.run_pipelines():
        policy = plan.run_policy(pipeline)
        if policy is None:
            continue
        while True:
            runs, lines = await store.prune_runs(
                pipeline, ended_before=policy.ended_before, keep=policy.keep, limit=batch
            )
            pruned.runs += runs
            pruned.log_lines += lines
            # Other writers (ingest, task updates) get the store between batches.
            await anyio.lowlevel.checkpoint()
            if runs < batch:
                break
    if plan.events_before is not None:
        # Events an open batch or correlation holds are read back at the next start.
        held = set(Windows().refs(await store.open_windows()))
        while True:
            events = await store.prune_events(plan.events_before, keep=held, limit=batch)
            pruned.events += events
            await anyio.lowlevel.checkpoint()
            if events < batch:
                break
    return pruned


class _Service(Protocol):
    store: Store
    clock: Clock
    config: Config
    pipelines: dict[str, Pipeline]


def _plan_for(service: _Service) -> RetentionPlan:
    return plan_retention(
        service.clock.now(),
        service.config.spec.retention,
        {name: p.spec.retention for name, p in service.pipelines.items()},
    )


async def retention_loop(service: _Service) -> None:
    """Every ``retention.every``, one pass over the store; returns at once if nothing
    asks for retention when the service starts (``retention:`` added later needs a restart)."""
    if not wanted(
        service.config.spec.retention, (p.spec.retention for p in service.pipelines.values())
    ):
        return
    while True:
        settings = service.config.spec.retention
        await service.clock.sleep(settings.every if settings is not None else DEFAULT_EVERY)
        started = service.clock.monotonic()
        try:
            pruned = await prune(service.store, _plan_for(service))
        except Exception:
            # The next pass tries again; the service itself is not at stake.
            logger.exception("retention: the pass failed")
            continue
        pruned.seconds = service.clock.monotonic() - started
        logger.info("%s", pruned.summary())
