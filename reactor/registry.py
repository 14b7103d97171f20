"""Connectors register trigger kinds (``on: file``) and task types (``python:``) by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from reactor.actions import Action
from reactor.asset_trigger import AssetTriggerSpec
from reactor.control import (
    ForEachAction,
    ForEachTaskSpec,
    IfAction,
    IfTaskSpec,
    RunPipelineAction,
    RunPipelineTaskSpec,
)
from reactor.sensors import Sensor
from reactor.specs import EventTriggerSpec, PipelineTriggerSpec, TaskSpec, TriggerSpec

__all__ = ["Registry", "TaskKind", "TriggerKind", "default_registry"]


@dataclass(frozen=True)
class TriggerKind:
    """``on: NAME``: its spec model and, for kinds that watch something, its sensor."""

    name: str
    spec: type[TriggerSpec]
    sensor: Callable[[Any], Sensor] | None = None


@dataclass(frozen=True)
class TaskKind:
    """A task type named by its key: its spec model and how to build its action.

    ``action(spec, base_dir)`` compiles the spec's templates (raising
    ``ExpressionError`` with the field's ``loc`` when one is broken).
    """

    key: str
    spec: type[TaskSpec]
    action: Callable[[Any, Path], Action]


@dataclass(eq=False)
class Registry:
    """Every trigger kind and task type this process knows, by name."""

    triggers: dict[str, TriggerKind] = field(default_factory=dict)
    tasks: dict[str, TaskKind] = field(default_factory=dict)

    def add_trigger(self, kind: TriggerKind) -> None:
        if kind.name in self.triggers:
            raise ValueError(f"trigger kind {kind.name!r} is registered twice")
        self.triggers[kind.name] = kind

    def add_task(self, kind: TaskKind) -> None:
        if kind.key in self.tasks:
            raise ValueError(f"task type {kind.key!r} is registered twice")
        self.tasks[kind.key] = kind


def _core_registry() -> Registry:
    registry = Registry()
    registry.add_trigger(TriggerKind("event", EventTriggerSpec))
    registry.add_trigger(TriggerKind("pipeline", PipelineTriggerSpec))
    registry.add_trigger(TriggerKind("asset", AssetTriggerSpec))
    registry.add_task(TaskKind("if", IfTaskSpec, IfAction))
    registry.add_task(TaskKind("for_each", ForEachTaskSpec, ForEachAction))
    registry.add_task(TaskKind("run_pipeline", RunPipelineTaskSpec, RunPipelineAction))
    return registry


@cache
def default_registry() -> Registry:
    """The core kinds plus every installed connector package's (``reactor.connectors``)."""
    registry = _core_registry()
    for entry in entry_points(group="reactor.connectors"):
        register = entry.load()
        register(registry)
    return registry
