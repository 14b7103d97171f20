"""GET /api/sensors, GET /api/dead-letters and Client.sensors() on a real port, real sensors."""

from __future__ import annotations

import math
import re
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import httpx
import pytest
from anyio.abc import TaskStatus
from helpers import wait_for

from reactor import AsyncClient, Client
from reactor.actions import TaskRequest
from reactor.clock import FakeClock
from reactor.events import Event
from reactor.registry import Registry, TaskKind, TriggerKind
from reactor.sensors import SensorContext
from reactor.service import Reactor
from reactor.specs import EventFilter, TaskSpec, TriggerSpec
from reactor.store import Store
from reactor.store.records import FINAL_RUN_STATES, DeadLetter

from .conftest import TEST_SETTINGS

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

HEALTH_KEYS = {
    "trigger",
    "pipeline",
    "on",
    "connection",
    "state",
    "message",
    "since",
    "events",
    "duplicates",
    "dead_letters",
    "last_event_at",
    "last_error",
    "last_error_at",
    "restarts",
    "lag",
    "cursor",
}

INBOX = """
name: inbox
triggers:
  - on: file
    path: ./inbox
    pattern: "*.csv"
    settle: 0s
tasks:
  - id: show
    shell: "echo {{ event.data.name }}"
"""


async def get_sensors(base: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        response = await http.get("/api/sensors")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def test_a_file_sensor_is_listed_and_counts_what_lands(
    write_pipeline, pipelines_dir: Path, start_reactor
) -> None:
    write_pipeline("inbox.yaml", INBOX)
    inbox = pipelines_dir / "inbox"
    inbox.mkdir()
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"

        async def watching() -> bool:
            return (await get_sensors(base))[0]["state"] == "watching"

        await wait_for(watching, message="the file sensor to watch")
        (sensor,) = await get_sensors(base)
        assert set(sensor) == HEALTH_KEYS
        assert sensor["trigger"] == "inbox/file"
        assert sensor["pipeline"] == "inbox"
        assert sensor["on"] == "file"
        assert sensor["connection"] is None
        assert sensor["message"] == str(inbox.resolve())
        assert sensor["since"] is not None
        assert (sensor["events"], sensor["duplicates"], sensor["dead_letters"]) == (0, 0, 0)
        assert (sensor["last_event_at"], sensor["last_error"], sensor["restarts"]) == (
            None,
            None,
            0,
        )

        (inbox / "a.csv").write_text("id\n1\n")

        async def counted() -> bool:
            return (await get_sensors(base))[0]["events"] == 1

        await wait_for(counted, message="the file's event to be counted")
        (sensor,) = await get_sensors(base)
        assert sensor["state"] == "watching"
        assert sensor["last_event_at"] is not None

        # The clients read the same list (the blocking one from a thread: this loop serves it).
        def blocking() -> list[dict[str, Any]]:
            with Client(base) as client:
                return client.sensors()

        assert await anyio.to_thread.run_sync(blocking) == [sensor]
        async with AsyncClient(base) as client:
            assert await client.sensors() == [sensor]


async def test_no_sensors_is_an_empty_list(write_pipeline, start_reactor) -> None:
    write_pipeline("p.yaml", "name: p\ntasks:\n  - {id: a, shell: echo}\n")
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        assert await get_sensors(f"http://127.0.0.1:{reactor.http_port}") == []


# --- GET /api/dead-letters -----------------------------------------------------------------------


async def test_dead_letters_are_paged_newest_first(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("p.yaml", "name: p\ntasks:\n  - {id: a, shell: echo}\n")
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        for n in range(5):
            trigger = "orders/topic" if n != 2 else "rows/table"
            when = reactor.clock.now()
            await reactor.dead_letter(DeadLetter(trigger, f"bad {n}", {"n": n}, when, f"0/{n}"))
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            everything = (await http.get("/api/dead-letters")).json()
            assert [d["reason"] for d in everything] == [f"bad {n}" for n in (4, 3, 2, 1, 0)]
            assert set(everything[0]) == {"seq", "trigger", "ref", "reason", "payload", "time"}
            assert everything[0]["payload"] == {"n": 4}
            assert everything[0]["ref"] == "0/4"

            reasons = []
            url = "/api/dead-letters?trigger=orders/topic&limit=2"
            pages = 0
            while url:
                response = await http.get(url)
                assert response.status_code == 200, response.text
                reasons += [d["reason"] for d in response.json()]
                assert {d["trigger"] for d in response.json()} <= {"orders/topic"}
                url = response.links.get("next", {}).get("url")
                pages += 1
            assert reasons == ["bad 4", "bad 3", "bad 1", "bad 0"]
            # Two full pages, then an empty one (a full page cannot know it is the last).
            assert pages == 3

            last = await http.get("/api/dead-letters", params={"limit": 6})
            assert "link" not in last.headers
            for bad in ("limit=0", "limit=abc", "cursor=0", "cursor=-1"):
                response = await http.get(f"/api/dead-letters?{bad}")
                assert response.status_code == 422, bad


# --- a sensor with a connection: -----------------------------------------------------------------


class ProbeTriggerSpec(TriggerSpec):
    """``on: probe``: a sensor reaching its ``connection:``, as Kafka and table sensors do."""

    on: Literal["probe"]
    connection: str

    has_sensor: ClassVar[bool] = True

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter("probe.row")


class ProbeSensor:
    """Resolves its connection, emits two rows with a cursor, dead-letters a third, waits."""

    def __init__(self, spec: ProbeTriggerSpec) -> None:
        self.spec = spec

    async def run(self, ctx: SensorContext, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        url = ctx.connection(self.spec.connection)
        ctx.set_health("watching", f"reading {url.rpartition('/')[2]}")
        rows = [Event("probe.row", ctx.source, {"row": n}, id=f"row-{n}") for n in (1, 2)]
        await ctx.emit_many(rows, cursor={"row": 2})
        await ctx.emit_many(rows[1:], cursor={"row": 2})
        await ctx.dead_letter("row 3 has no id", {"row": 3, "id": None}, ref="row/3")
        await ctx.clock.sleep(math.inf)


class NoopSpec(TaskSpec):
    type_key: ClassVar[str] = "noop"
    noop: bool = True


class NoopAction:
    def __init__(self, spec: NoopSpec, base_dir: Path) -> None:
        self.spec = spec

    async def execute(self, request: TaskRequest) -> Any:
        return None


def probe_registry() -> Registry:
    registry = Registry()
    registry.add_trigger(TriggerKind("probe", ProbeTriggerSpec, ProbeSensor))
    registry.add_task(TaskKind("noop", NoopSpec, NoopAction))
    return registry


PROBE = """
name: rows
triggers:
  - on: probe
    id: warehouse_rows
    connection: {connection}
tasks:
  - {{id: a, noop: true}}
"""


@asynccontextmanager
async def probe_service(
    folder: Path, store: Store, connection: str, settings: str
) -> AsyncIterator[tuple[Reactor, str]]:
    (folder / "rows.yaml").write_text(PROBE.format(connection=connection), encoding="utf-8")
    (folder / "reactor.yaml").write_text(textwrap.dedent(settings), encoding="utf-8")
    async with Reactor(
        folder,
        store,
        clock=FakeClock(),
        registry=probe_registry(),
        settings=replace(TEST_SETTINGS, http=("127.0.0.1", 0)),
    ) as reactor:
        yield reactor, f"http://127.0.0.1:{reactor.http_port}"


async def two_runs_finished(store: Store) -> bool:
    runs = await store.list_runs(pipeline="rows", limit=10, before=None)
    return len(runs) == 2 and all(run.status in FINAL_RUN_STATES for run in runs)


async def test_a_named_connection_resolves_and_the_password_is_not_shown(
    pipelines_dir: Path, store: Store
) -> None:
    settings = """
    connections:
      warehouse: postgresql://etl:s3cret@db.internal:5432/warehouse
    """
    async with probe_service(pipelines_dir, store, "warehouse", settings) as (_, base):

        async def done() -> bool:
            sensors = await get_sensors(base)
            return bool(sensors) and sensors[0]["dead_letters"] == 1

        await wait_for(done, message="the probe sensor to emit and dead-letter")
        await wait_for(lambda: two_runs_finished(store), message="a run for each new row")
        (sensor,) = await get_sensors(base)
        assert sensor["trigger"] == "rows/warehouse_rows"
        assert sensor["on"] == "probe"
        assert sensor["connection"] == "postgresql://etl:***@db.internal:5432/warehouse"
        assert (sensor["state"], sensor["message"]) == ("watching", "reading warehouse")
        assert (sensor["events"], sensor["duplicates"]) == (2, 1)
        assert sensor["cursor"] == {"row": 2}
        assert sensor["last_error"] is None
        assert await store.get_cursor("rows/warehouse_rows") == {"row": 2}
        (letter,) = await store.dead_letters("rows/warehouse_rows")
        assert (letter.reason, letter.payload, letter.ref) == (
            "row 3 has no id",
            {"row": 3, "id": None},
            "row/3",
        )


async def test_an_env_connection_reads_the_variable(
    pipelines_dir: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACTOR_TEST_PROBE_URL", "postgresql://probe:pw@127.0.0.1/rows")
    settings = "connections:\n  rows_db: env:REACTOR_TEST_PROBE_URL\n"
    async with probe_service(pipelines_dir, store, "rows_db", settings) as (_, base):

        async def watching() -> bool:
            sensors = await get_sensors(base)
            return bool(sensors) and sensors[0]["state"] == "watching"

        await wait_for(watching, message="the probe sensor to watch")
        # Its rows start runs: they end before the service stops.
        await wait_for(lambda: two_runs_finished(store), message="a run for each new row")
        (sensor,) = await get_sensors(base)
        assert sensor["connection"] == "postgresql://probe:***@127.0.0.1/rows"
        assert sensor["message"] == "reading rows"


async def test_an_unset_env_connection_makes_the_sensor_fail_with_the_reason(
    pipelines_dir: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REACTOR_TEST_UNSET_URL", raising=False)
    settings = "connections:\n  rows_db: env:REACTOR_TEST_UNSET_URL\n"
    async with probe_service(pipelines_dir, store, "rows_db", settings) as (reactor, base):

        async def failing() -> bool:
            sensors = await get_sensors(base)
            return bool(sensors) and sensors[0]["state"] == "failing"

        await wait_for(failing, message="the probe sensor to fail")
        (sensor,) = await get_sensors(base)
        reason = (
            "connection 'rows_db' reads environment variable REACTOR_TEST_UNSET_URL,"
            " which is not set"
        )
        assert sensor["message"] == f"ConnectorError: {reason}"
        assert sensor["last_error"] == f"ConnectorError: {reason}"
        assert sensor["last_error_at"] is not None
        assert sensor["restarts"] == 1
        assert sensor["connection"] == f"unresolved: {reason}"
        assert (sensor["events"], sensor["dead_letters"]) == (0, 0)
        assert reactor.health()["sensors"]["rows/warehouse_rows"]["state"] == "failing"


async def test_the_client_docs_sensor_check_prints_a_failing_sensor(
    pipelines_dir: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (Path(__file__).parents[2] / "docs" / "client.md").read_text(encoding="utf-8")
    section = page.split("## Sensors\n", 1)[1]
    example = re.search(r"^```python\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert example is not None
    monkeypatch.delenv("REACTOR_TEST_UNSET_URL", raising=False)
    settings = "connections:\n  rows_db: env:REACTOR_TEST_UNSET_URL\n"
    async with probe_service(pipelines_dir, store, "rows_db", settings) as (reactor, base):
        await wait_for(
            lambda: reactor.sensor_health()["rows/warehouse_rows"].state == "failing",
            message="the probe sensor to fail",
        )
        code = example[1].replace("http://127.0.0.1:8080", base)
        done = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == (
        "rows/warehouse_rows: failing: ConnectorError: connection 'rows_db' reads environment"
        " variable REACTOR_TEST_UNSET_URL, which is not set\n"
    )
