"""OpenLineage run events for every task attempt, POSTed to an HTTP endpoint in the
background: a bounded queue, retries with backoff, never blocking or failing a task."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import AfterValidator, BeforeValidator, Field

from reactor.clock import Clock
from reactor.durations import Duration
from reactor.errors import ConnectorError
from reactor.lineage import TaskLineage
from reactor.specs import Spec
from reactor.store.records import RunRecord

if TYPE_CHECKING:
    import httpx

__all__ = [
    "PRODUCER",
    "SCHEMA_URL",
    "LineageSpec",
    "OpenLineageEmitter",
    "OpenLineageSpec",
    "attempt_run_id",
    "dataset",
    "run_event",
]

logger = logging.getLogger("reactor.openlineage")

#: Who made the events (the ``producer`` of every event and facet).
PRODUCER = "https://github.com/reactor-orchestrator/reactor"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_PARENT_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet"
)
_ERROR_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)
#: Run ids are UUIDs derived from Reactor's ids, the same every time.
_RUN_NAMESPACE = uuid.UUID("3f1c1e2a-6d55-4c8e-9a57-0f6d2b8e4c11")
EventType = Literal["START", "COMPLETE", "FAIL", "ABORT"]


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def _env_reference(value: str) -> str:
    if not value.startswith("env:") or not value[4:]:
        raise ValueError(
            "api_key is read from the environment: write env:VARIABLE (the key itself"
            " never sits in reactor.yaml)"
        )
    return value


def _empty_section(value: Any) -> Any:
    return {} if value is None else value


class OpenLineageSpec(Spec):
    """``lineage: {openlineage: {url, namespace, api_key, ...}}`` in ``reactor.yaml``."""

    #: Events go to ``url`` + ``/api/v1/lineage``.
    url: Annotated[str, AfterValidator(_http_url)]
    #: The namespace of every job (``pipeline.task``) and of bare-named datasets.
    namespace: str = Field("reactor", min_length=1)
    #: ``env:VARIABLE``: sent as ``Authorization: Bearer <key>``.
    api_key: Annotated[str, AfterValidator(_env_reference)] | None = None
    #: One request's time limit.
    timeout: Duration = Field(5.0, gt=0)
    #: Tries after the first for a request that failed (network, 5xx, 429).
    retries: int = Field(3, ge=0, le=20)
    #: Events waiting to be sent; beyond it new ones are dropped (and logged).
    max_queue: int = Field(1000, ge=1, le=1_000_000)


class LineageSpec(Spec):
    """``lineage:`` in ``reactor.yaml``."""

    openlineage: OpenLineageSpec | None = None


#: ``lineage:`` written with nothing under it is the defaults.
LineageSection = Annotated[LineageSpec, BeforeValidator(_empty_section)]


def attempt_run_id(run_id: str, task_id: str, attempt: int) -> str:
    """The OpenLineage ``runId`` of one task attempt: a UUID made from its ids."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{run_id}/{task_id}/{attempt}"))


def _job_name(pipeline: str, task_id: str) -> str:
    # Every iteration of a loop (``each[3]``) is a run of the loop's one job.
    return f"{pipeline}.{task_id.partition('[')[0]}"


def dataset(asset: str, namespace: str) -> dict[str, Any]:
    """An asset as an OpenLineage dataset: ``postgres://warehouse/public.orders`` is
    ``{namespace: postgres://warehouse, name: public.orders}``; ``file:///data/x.csv``
    is ``{namespace: file, name: /data/x.csv}``; a bare name is in ``namespace``."""
    scheme, sep, rest = asset.partition("://")
    if not sep:
        return {"namespace": namespace, "name": asset, "facets": {}}
    if scheme == "file":
        return {"namespace": "file", "name": rest, "facets": {}}
    authority, _, path = rest.partition("/")
    return {"namespace": f"{scheme}://{authority}", "name": path or "/", "facets": {}}


def run_event(
    event_type: EventType,
    *,
    at: datetime,
    run: RunRecord,
    task_id: str,
    attempt: int,
    inputs: Sequence[str],
    outputs: Sequence[str],
    namespace: str,
    error: str | None = None,
) -> dict[str, Any]:
    """One OpenLineage ``RunEvent`` (spec 2-0-2) of a task attempt."""
    facets: dict[str, Any] = {
        "parent": {
            "_producer": PRODUCER,
            "_schemaURL": _PARENT_SCHEMA,
            "run": {"runId": str(uuid.uuid5(_RUN_NAMESPACE, run.id))},
            "job": {"namespace": namespace, "name": run.pipeline},
        }
    }
    if error is not None:
        facets["errorMessage"] = {
            "_producer": PRODUCER,
            "_schemaURL": _ERROR_SCHEMA,
            "message": error,
            "programmingLanguage": "python",
        }
    return {
        "eventType": event_type,
        "eventTime": at.isoformat(),
        "run": {"runId": attempt_run_id(run.id, task_id, attempt), "facets": facets},
        "job": {"namespace": namespace, "name": _job_name(run.pipeline, task_id), "facets": {}},
        "inputs": [dataset(a, namespace) for a in inputs],
        "outputs": [dataset(a, namespace) for a in outputs],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


class OpenLineageEmitter:
    """Queues run events (never waiting) and sends them in order from :meth:`run`."""

    def __init__(
        self,
        spec: OpenLineageSpec,
        env: Mapping[str, str],
        clock: Clock,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Raises :class:`ConnectorError` when ``api_key``'s variable is not set."""
        self.spec = spec
        self.endpoint = f"{spec.url}/api/v1/lineage"
        self._headers = {"Content-Type": "application/json"}
        if spec.api_key is not None:
            variable = spec.api_key[4:]
            key = env.get(variable)
            if not key:
                raise ConnectorError(
                    f"lineage.openlineage.api_key reads environment variable {variable},"
                    " which is not set"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self._clock = clock
        self._transport = transport
        self._send: MemoryObjectSendStream[dict[str, Any]]
        self._receive: MemoryObjectReceiveStream[dict[str, Any]]
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](
            spec.max_queue
        )
        #: Events dropped because the queue was full or the endpoint kept failing.
        self.dropped = 0
        self.sent = 0

    # reactor.executor.LineageSink

    def attempt_started(
        self, run: RunRecord, task_id: str, attempt: int, lineage: TaskLineage, at: datetime
    ) -> None:
        self._queue("START", run, task_id, attempt, lineage, at, None)

    def attempt_ended(
        self,
        run: RunRecord,
        task_id: str,
        attempt: int,
        status: str,
        lineage: TaskLineage,
        at: datetime,
        error: str | None,
    ) -> None:
        kind: EventType = (
            "COMPLETE" if status == "succeeded" else "ABORT" if status == "cancelled" else "FAIL"
        )
        self._queue(kind, run, task_id, attempt, lineage, at, error)

    def _queue(
        self,
        kind: EventType,
        run: RunRecord,
        task_id: str,
        attempt: int,
        lineage: TaskLineage,
        at: datetime,
        error: str | None,
    ) -> None:
        event = run_event(
            kind,
            at=at,
            run=run,
            task_id=task_id,
            attempt=attempt,
            inputs=lineage.inputs,
            outputs=lineage.outputs,
            namespace=self.spec.namespace,
            error=error,
        )
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self._dropped(f"the queue of {self.spec.max_queue} events is full", event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._dropped("the service is stopping", event)

    def _dropped(self, why: str, event: dict[str, Any]) -> None:
        self.dropped += 1
        logger.warning(
            "OpenLineage event %s of %s dropped (%d so far): %s",
            event["eventType"],
            event["job"]["name"],
            self.dropped,
            why,
        )

    async def run(self) -> None:
        """Send queued events one by one, in order, until cancelled; then try to send
        what is left for up to ``timeout``."""
        import httpx  # only a service that sends lineage pays for it

        async with httpx.AsyncClient(
            timeout=self.spec.timeout, transport=self._transport, headers=self._headers
        ) as client:
            try:
                async for event in self._receive:
                    await self._deliver(client, event)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.spec.timeout):
                    self._send.close()
                    async for event in self._receive:
                        await self._deliver(client, event, retries=0)
                while True:
                    try:
                        event = self._receive.receive_nowait()
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                    self._dropped("the service stopped before it could be sent", event)

    async def _deliver(
        self, client: httpx.AsyncClient, event: dict[str, Any], retries: int | None = None
    ) -> None:
        import httpx

        tries = (self.spec.retries if retries is None else retries) + 1
        delay = 0.5
        why = ""
        for attempt in range(tries):
            if attempt:
                await self._clock.sleep(delay)
                delay = min(delay * 2, 30.0)
            try:
                response = await client.post(self.endpoint, json=event)
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 300:
                self.sent += 1
                return
            why = f"HTTP {response.status_code} from {self.endpoint}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the endpoint refuses this event: sending it again changes nothing
        self._dropped(f"sending failed after {attempt + 1} tries: {why}", event)
