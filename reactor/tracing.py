"""OpenTelemetry traces of runs and task attempts, when the SDK is installed and configured.

Nothing here imports OpenTelemetry unless the standard environment variables ask for
traces: without them (or without the SDK) :func:`tracing_from_env` returns ``None`` and a
service pays nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from reactor.dag import FINAL_TASK_STATES
from reactor.events import Event
from reactor.store.records import FINAL_RUN_STATES

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Link, Span

    from reactor.store import RunRecord, TaskRecord

__all__ = ["Tracing", "tracing_from_env", "wants_traces"]

logger = logging.getLogger("reactor.tracing")

#: Events whose runs have not started yet, remembered for the link, at most.
_MAX_ORIGINS = 10_000
_FAILED = frozenset({"failed", "timed_out", "upstream_failed"})
#: The W3C trace context an event may carry (CloudEvents' distributed tracing extension).
_TRACE_EXTENSIONS = ("traceparent", "tracestate")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def wants_traces(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: ``OTEL_TRACES_EXPORTER`` names an exporter
    (not ``none``), or an OTLP endpoint is set, and ``OTEL_SDK_DISABLED`` is not true."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        return False
    names = _exporter_names(env)
    return bool(names) and names != ["none"]


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    configured = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if configured:
        return [name.strip().lower() for name in configured.split(",") if name.strip()]
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ["otlp"]
    return []


def tracing_from_env(env: Mapping[str, str]) -> Tracing | None:
    """A :class:`Tracing` exporting as the environment says, or ``None`` when it asks for
    no traces or the OpenTelemetry SDK is not installed (said once in the log)."""
    if not wants_traces(env):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "traces are configured (OTEL_* variables) but the OpenTelemetry SDK is not"
            " installed: pip install 'reactor-orchestrator[otel]'"
        )
        return None
    exporters = [e for name in _exporter_names(env) if (e := _exporter(name, env)) is not None]
    if not exporters:
        return None
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "reactor"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        logger.warning(
            "OTEL_TRACES_EXPORTER: %r is not an exporter Reactor knows (otlp, console, none)", name
        )
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol != "http/protobuf":
        logger.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL: %r is not supported; Reactor exports traces over"
            " http/protobuf only (unset the variable or set it to http/protobuf)",
            protocol,
        )
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning(
            "OTEL_TRACES_EXPORTER=otlp but opentelemetry-exporter-otlp-proto-http is not"
            " installed: pip install 'reactor-orchestrator[otel]'"
        )
        return None
    # It reads the OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout) itself.
    return OTLPSpanExporter()


@dataclass(frozen=True)
class _Origin:
    """The event that fired a run, remembered until the run starts."""

    event_id: str
    source: str
    type: str
    trace: Mapping[str, str]


class Tracing:
    """A trace per run (span ``run PIPELINE``) with a span per task attempt (``task ID``)
    inside it; the run span links to the trace its event carried, if any, and names the
    event. A run observer and an event observer of the service."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("reactor")
        self._runs: dict[str, Span] = {}
        self._attempts: dict[tuple[str, str], Span] = {}
        self._origins: dict[str, _Origin] = {}

    async def close(self) -> None:
        """End what is still open and send every span (in a thread: the exporter blocks)."""
        for span in [*self._attempts.values(), *self._runs.values()]:
            span.end()
        self._attempts.clear()
        self._runs.clear()
        await anyio.to_thread.run_sync(self.provider.shutdown)

    # EventObserver

    def event_decided(self, event: Event, outcome: list[dict[str, Any]]) -> None:
        for record in outcome:
            run_id = record.get("run_id")
            if not isinstance(run_id, str) or run_id in self._runs:
                continue
            if len(self._origins) >= _MAX_ORIGINS:
                del self._origins[next(iter(self._origins))]
            trace = {
                name: value
                for name in _TRACE_EXTENSIONS
                if isinstance(value := event.extensions.get(name), str)
            }
            self._origins[run_id] = _Origin(event.id, event.source, event.type, trace)

    # RunObserver

    def run_changed(self, run: RunRecord) -> None:
        if run.status == "running":
            if run.id not in self._runs:
                self._runs[run.id] = self._start_run(run)
            return
        if run.status not in FINAL_RUN_STATES:
            return
        self._origins.pop(run.id, None)
        span = self._runs.pop(run.id, None)
        if span is None:
            return
        for key in [k for k in self._attempts if k[0] == run.id]:
            self._attempts.pop(key).end()
        span.set_attribute("reactor.run.status", run.status)
        if run.status == "failed":
            _set_error(span, run.reason or "failed")
        span.end()

    def _start_run(self, run: RunRecord) -> Span:
        attributes: dict[str, Any] = {
            "reactor.run.id": run.id,
            "reactor.pipeline": run.pipeline,
            "reactor.pipeline.version": run.version,
        }
        if run.trigger:
            attributes["reactor.trigger"] = run.trigger
        if run.event_ids:
            attributes["reactor.event.ids"] = list(run.event_ids)
        links: list[Link] = []
        origin = self._origins.pop(run.id, None)
        if origin is not None:
            attributes["reactor.event.id"] = origin.event_id
            attributes["reactor.event.source"] = origin.source
            attributes["reactor.event.type"] = origin.type
            if (link := _link(origin.trace)) is not None:
                links.append(link)
        return self._tracer.start_span(f"run {run.pipeline}", attributes=attributes, links=links)

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        key = (run.id, task.task_id)
        if task.status == "running":
            if note.startswith("attempt "):
                # A new attempt; one still open (a retry not reported) ends here.
                if (open_span := self._attempts.pop(key, None)) is not None:
                    open_span.end()
                self._attempts[key] = self._start_attempt(run, task)
            elif task.error is not None and (open_span := self._attempts.pop(key, None)):
                # The attempt failed and the task will be retried ("failed: ...; retrying").
                outcome = note.partition(":")[0] if note.startswith("timed_out:") else "failed"
                _end_attempt(open_span, outcome, task.error)
            return
        if task.status in FINAL_TASK_STATES and (span := self._attempts.pop(key, None)):
            _end_attempt(span, task.status, task.error)

    def _start_attempt(self, run: RunRecord, task: TaskRecord) -> Span:
        from opentelemetry import trace

        loop, bracket, _ = task.task_id.partition("[")
        parent = self._attempts.get((run.id, loop)) if bracket else None
        parent = parent or self._runs.get(run.id)
        context = trace.set_span_in_context(parent) if parent is not None else None
        return self._tracer.start_span(
            f"task {task.task_id}",
            context=context,
            attributes={
                "reactor.run.id": run.id,
                "reactor.pipeline": run.pipeline,
                "reactor.task.id": task.task_id,
                "reactor.task.attempt": task.attempts,
            },
        )


def _end_attempt(span: Span, status: str, error: str | None) -> None:
    span.set_attribute("reactor.task.status", status)
    if status in _FAILED:
        _set_error(span, error or status)
    span.end()


def _set_error(span: Span, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))


def _link(carrier: Mapping[str, str]) -> Link | None:
    """A link to the span a ``traceparent`` names, if it is a valid W3C trace context."""
    if "traceparent" not in carrier:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract(dict(carrier))
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None
    return trace.Link(span_context, {"reactor.link": "event"})
