"""Traces sent over OTLP/HTTP to a real receiver on 127.0.0.1 that decodes the protobuf
requests as a collector would: a trace per run, a span per task attempt, the event's link."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import Recorder, wait_for
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from reactor.events import Event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"

STEPS = """
from pathlib import Path


def flaky(marker):
    # Fails the first time it is called for ``marker``, then succeeds.
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("first attempt fails")
    return {"ok": True}


def ok():
    return 1
"""

PIPELINE = """
name: traced
params:
  marker: {{type: string}}
triggers:
  - id: jobs
    on: event
    type: traced.job
    params: {{marker: "{{{{ event.data.marker }}}}"}}
tasks:
  - id: first
    python: {module}:flaky
    args: {{marker: "{{{{ params.marker }}}}"}}
    retries: {{max: 1, initial: 0.05s}}
  - id: second
    needs: [first]
    python: {module}:ok
"""


class Receiver:
    """An OTLP/HTTP trace endpoint: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.paths.append(self.path)
                receiver.requests.append(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[dict[str, object], Span]]:
        """Every span received, with its resource's attributes."""
        return [
            ({a.key: _value(a.value) for a in resource.resource.attributes}, span)
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]  # type: ignore[attr-defined]
    return getattr(value, kind)


def attributes(span: Span) -> dict[str, object]:
    return {a.key: _value(a.value) for a in span.attributes}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        thread.join(timeout=10)


async def test_a_run_is_sent_as_a_trace_with_a_span_per_attempt_linked_to_its_event(
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    write_pipeline,
    write_module,
    start_reactor,
    recorder: Recorder,
    tmp_path,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{receiver.url}/v1/traces")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    write_pipeline("traced.yaml", PIPELINE.format(module=write_module(STEPS)))
    event = Event(
        "traced.job",
        "test/jobs",
        {"marker": str(tmp_path / "marker")},
        extensions={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )

    async with start_reactor() as reactor:
        assert reactor.tracing is not None
        [run_id] = (await reactor.publish(event)).run_ids
        [run] = await recorder.wait_finished(1)
    # Stopping sent what was left; the receiver has it all.
    await wait_for(lambda: len(receiver.spans()) >= 4, message="4 spans at the receiver")

    assert run.status == "succeeded"
    assert set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans()
    assert {resource["service.name"] for resource, _ in spans} == {"reactor"}
    by_name: dict[str, list[Span]] = {}
    for _, span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert sorted(by_name) == ["run traced", "task first", "task second"]

    [root] = by_name["run traced"]
    assert root.parent_span_id == b""
    root_attributes = attributes(root)
    assert root_attributes["reactor.run.id"] == run_id
    assert root_attributes["reactor.pipeline"] == "traced"
    assert root_attributes["reactor.trigger"] == "traced/jobs"
    assert root_attributes["reactor.event.id"] == event.id
    assert root_attributes["reactor.event.ids"] == [event.id]
    assert root_attributes["reactor.run.status"] == "succeeded"
    [link] = root.links
    assert link.trace_id.hex() == TRACE_ID
    assert link.span_id.hex() == PARENT_ID

    first_attempts = sorted(
        by_name["task first"], key=lambda s: attributes(s)["reactor.task.attempt"]
    )
    assert [attributes(s)["reactor.task.attempt"] for s in first_attempts] == [1, 2]
    assert [attributes(s)["reactor.task.status"] for s in first_attempts] == [
        "failed",
        "succeeded",
    ]
    assert first_attempts[0].status.code == Status.STATUS_CODE_ERROR
    assert "first attempt fails" in first_attempts[0].status.message
    for span in [*first_attempts, *by_name["task second"]]:
        assert span.trace_id == root.trace_id
        assert span.parent_span_id == root.span_id
        assert attributes(span)["reactor.run.id"] == run_id


async def test_no_traces_when_the_variables_do_not_ask(
    monkeypatch: pytest.MonkeyPatch, start_reactor
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    async with start_reactor() as reactor:
        assert reactor.tracing is None
