"""Reactor's built-in connectors: every sensor and action that talks to the world."""

from __future__ import annotations

from reactor.registry import Registry, TaskKind, TriggerKind

__all__ = ["register"]


def register(registry: Registry) -> None:
    """Entry point ``reactor.connectors``: add the built-in kinds to ``registry``."""
    from connectors import (
        check_task,
        dbt,
        files,
        http_task,
        kafka,
        kafka_task,
        notebook,
        python,
        schedule,
        shell,
        spark,
        sql,
        table,
        webhooks,
    )

    registry.add_trigger(TriggerKind("file", files.FileTriggerSpec, files.FileSensor))
    registry.add_trigger(
        TriggerKind("schedule", schedule.ScheduleTriggerSpec, schedule.ScheduleSensor)
    )
    registry.add_trigger(TriggerKind("webhook", webhooks.WebhookTriggerSpec))
    registry.add_trigger(TriggerKind("kafka", kafka.KafkaTriggerSpec, kafka.KafkaSensor))
    registry.add_trigger(TriggerKind("table", table.TableTriggerSpec, table.TableSensor))
    registry.add_task(TaskKind("python", python.PythonTaskSpec, python.PythonAction))
    registry.add_task(TaskKind("shell", shell.ShellTaskSpec, shell.ShellAction))
    registry.add_task(TaskKind("kafka", kafka_task.KafkaTaskSpec, kafka_task.KafkaAction))
    registry.add_task(TaskKind("http", http_task.HttpTaskSpec, http_task.HttpAction))
    registry.add_task(TaskKind("sql", sql.SqlTaskSpec, sql.SqlAction))
    registry.add_task(TaskKind("notebook", notebook.NotebookTaskSpec, notebook.NotebookAction))
    registry.add_task(TaskKind("spark", spark.SparkTaskSpec, spark.SparkAction))
    registry.add_task(TaskKind("check", check_task.CheckTaskSpec, check_task.CheckAction))
    registry.add_task(TaskKind("dbt", dbt.DbtTaskSpec, dbt.DbtAction))
