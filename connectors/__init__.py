"""Reactor's built-in connectors: every sensor and action that talks to the world."""

from __future__ import annotations

from reactor.registry import Registry, TaskKind, TriggerKind

__all__ = ["register"]


def register(registry: Registry) -> None:
    """Entry point ``reactor.connectors``: add the built-in kinds to ``registry``."""
    from connectors import files, python, schedule, shell, webhooks

    registry.add_trigger(TriggerKind("file", files.FileTriggerSpec, files.FileSensor))
    registry.add_trigger(
        TriggerKind("schedule", schedule.ScheduleTriggerSpec, schedule.ScheduleSensor)
    )
    registry.add_trigger(TriggerKind("webhook", webhooks.WebhookTriggerSpec))
    registry.add_task(TaskKind("python", python.PythonTaskSpec, python.PythonAction))
    registry.add_task(TaskKind("shell", shell.ShellTaskSpec, shell.ShellAction))
