"""Traces of runs and task attempts: when the environment asks for them, and the spans made
from the run and task changes a service reports (kept by the SDK's in-memory exporter)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from reactor.events import Event
from reactor.store import RunRecord, TaskRecord
from reactor.tracing import Tracing, tracing_from_env, wants_traces

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_SERVICE_NAME": "reactor"}, False),
    ],
)
def test_traces_only_when_the_environment_asks(env: dict[str, str], wanted: bool) -> None:
    assert wants_traces(env) is wanted


def test_no_tracing_without_the_variables() -> None:
    assert tracing_from_env({}) is None


def test_an_unknown_exporter_or_protocol_is_said_and_nothing_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="reactor.tracing"):
        assert tracing_from_env({"OTEL_TRACES_EXPORTER": "zipkin"}) is None
        grpc = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        assert tracing_from_env(grpc) is None
    assert caplog.messages == [
        "OTEL_TRACES_EXPORTER: 'zipkin' is not an exporter Reactor knows (otlp, console, none)",
        "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported; Reactor exports traces over"
        " http/protobuf only (unset the variable or set it to http/protobuf)",
    ]


def test_without_the_sdk_there_is_no_tracing_and_the_log_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # None in sys.modules: importing it raises ImportError, as when it is not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with caplog.at_level(logging.WARNING, logger="reactor.tracing"):
        assert tracing_from_env({"OTEL_TRACES_EXPORTER": "otlp"}) is None
    assert caplog.messages == [
        "traces are configured (OTEL_* variables) but the OpenTelemetry SDK is not"
        " installed: pip install 'reactor-orchestrator[otel]'"
    ]


def test_console_and_otlp_exporters_are_made_from_the_variables() -> None:
    tracing = tracing_from_env(
        {"OTEL_TRACES_EXPORTER": "console,otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}
    )
    assert tracing is not None
    try:
        processors = tracing.provider._active_span_processor._span_processors
        exporters = sorted(type(p.span_exporter).__name__ for p in processors)
        assert exporters == ["ConsoleSpanExporter", "OTLPSpanExporter"]
        assert tracing.provider.resource.attributes["service.name"] == "reactor"
    finally:
        tracing.provider.shutdown()


@pytest.fixture
def traced() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def run(status: str, run_id: str = "r1", reason: str | None = None) -> RunRecord:
    return RunRecord(
        id=run_id,
        run_key="k",
        pipeline="orders",
        version="v1",
        status=status,
        params={},
        trigger="orders/event",
        event_ids=["e1"],
        created_at=T0,
        reason=reason,
    )


def task(task_id: str, status: str, attempts: int = 1, error: str | None = None) -> TaskRecord:
    return TaskRecord("r1", task_id, status, attempts, error=error)


def test_a_run_is_a_trace_with_a_span_per_task_attempt(traced) -> None:
    tracing, exporter = traced
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    event = Event("order.created", "shop", id="e1", extensions={"traceparent": traceparent})
    tracing.event_decided(event, [{"trigger": "orders/event", "run_id": "r1"}])
    tracing.run_changed(run("queued"))
    tracing.run_changed(run("running"))
    tracing.task_changed(run("running"), task("load", "running"), "attempt 1")
    tracing.task_changed(
        run("running"), task("load", "running", error="exit 1"), "failed: exit 1; retrying"
    )
    tracing.task_changed(run("running"), task("load", "running", 2), "attempt 2")
    tracing.task_changed(run("running"), task("load", "succeeded", 2), "")
    tracing.task_changed(run("running"), task("report", "running"), "attempt 1")
    tracing.task_changed(run("running"), task("report", "failed", error="boom"), "boom")
    tracing.run_changed(run("failed", reason="task report failed"))

    spans = {
        (s.name, s.attributes.get("reactor.task.attempt")): s for s in exporter.get_finished_spans()
    }
    assert sorted(spans, key=str) == sorted(
        [("run orders", None), ("task load", 1), ("task load", 2), ("task report", 1)], key=str
    )
    root = spans[("run orders", None)]
    assert root.parent is None
    assert dict(root.attributes) == {
        "reactor.run.id": "r1",
        "reactor.pipeline": "orders",
        "reactor.pipeline.version": "v1",
        "reactor.trigger": "orders/event",
        "reactor.event.ids": ("e1",),
        "reactor.event.id": "e1",
        "reactor.event.source": "shop",
        "reactor.event.type": "order.created",
        "reactor.run.status": "failed",
    }
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "task report failed"
    [link] = root.links
    assert format(link.context.trace_id, "032x") == TRACE_ID
    assert format(link.context.span_id, "016x") == PARENT_ID

    for key in [("task load", 1), ("task load", 2), ("task report", 1)]:
        span = spans[key]
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
        assert span.attributes["reactor.run.id"] == "r1"
        assert span.attributes["reactor.task.id"] == key[0].split()[1]
    assert spans[("task load", 1)].attributes["reactor.task.status"] == "failed"
    assert spans[("task load", 1)].status.description == "exit 1"
    assert spans[("task load", 2)].attributes["reactor.task.status"] == "succeeded"
    assert spans[("task load", 2)].status.status_code is StatusCode.UNSET
    assert spans[("task report", 1)].status.status_code is StatusCode.ERROR


def test_loop_iterations_are_inside_their_loop_and_a_run_without_event_has_no_link(
    traced,
) -> None:
    tracing, exporter = traced
    tracing.run_changed(run("running", "r1"))
    tracing.task_changed(run("running"), task("each", "running"), "attempt 1")
    tracing.task_changed(run("running"), task("each[0]", "running"), "attempt 1")
    tracing.task_changed(run("running"), task("each[0]", "succeeded"), "")
    tracing.task_changed(run("running"), task("each", "succeeded"), "")
    tracing.run_changed(run("succeeded"))

    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["task each[0]"].parent.span_id == spans["task each"].context.span_id
    assert spans["task each"].parent.span_id == spans["run orders"].context.span_id
    assert spans["run orders"].links == ()
    assert "reactor.event.id" not in spans["run orders"].attributes
    assert spans["run orders"].status.status_code is StatusCode.UNSET


def test_an_event_without_a_valid_trace_context_gives_no_link(traced) -> None:
    tracing, exporter = traced
    event = Event("t", "s", id="e1", extensions={"traceparent": "not-a-trace"})
    tracing.event_decided(event, [{"trigger": "orders/event", "run_id": "r1"}])
    tracing.run_changed(run("running"))
    tracing.run_changed(run("succeeded"))

    [span] = exporter.get_finished_spans()
    assert span.links == ()
    assert span.attributes["reactor.event.id"] == "e1"


@pytest.mark.anyio
async def test_closing_ends_what_is_open(traced) -> None:
    tracing, exporter = traced
    tracing.run_changed(run("running"))
    tracing.task_changed(run("running"), task("load", "running"), "attempt 1")
    with anyio.fail_after(10):
        await tracing.close()

    assert sorted(s.name for s in exporter.get_finished_spans()) == ["run orders", "task load"]
