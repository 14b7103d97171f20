"""Lineage on both stores: declared and reported assets recorded for tasks that succeeded,
``on: asset`` runs, the assets API and pages, and OpenLineage events sent to a real
HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers import wait_for

from reactor.assets import ASSET_EVENT_SOURCE
from reactor.openlineage import SCHEMA_URL, attempt_run_id

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
from reactor.lineage import report


def load(day):
    report(inputs=["postgresql://Warehouse/Public.Orders"], outputs=[f"orders_{day}"])
    return day


def isolated():
    report(outputs=["kafka://Cluster/loaded"])
    return "child"


def boom():
    report(outputs=["never_written"])
    raise RuntimeError("no luck")
"""

UPSTREAM = """
name: upstream
params:
  out: {{type: string, default: /data/out.csv}}
tasks:
  - id: extract
    shell: 'printf %s "{{\\"inputs\\": [\\"s3://Bucket/raw//x.json\\"]}}" > "$REACTOR_LINEAGE"'
    inputs: [postgres://warehouse/public.customers]
    outputs: ["file://{{{{ params.out }}}}"]
  - id: load
    needs: [extract]
    python: {module}:load
    args: {{day: "d1"}}
  - id: child
    needs: [extract]
    python: {module}:isolated
    isolated: true
"""

FAILING = """
name: failing
tasks:
  - id: boom
    python: {module}:boom
    outputs: [declared_but_failed]
"""

DOWNSTREAM = """
name: downstream
params:
  name: {type: string, default: out.csv}
triggers:
  - on: asset
tasks:
  - id: read
    shell: echo read
    inputs: ["file:///data/{{ params.name }}"]
"""

DOWNSTREAM_BY_NAME = """
name: downstream
params:
  asset: {type: string}
triggers:
  - on: asset
    assets: ["file:///data/*.csv", "kafka://cluster/*"]
    params: {asset: "{{ event.subject }}"}
tasks:
  - id: read
    shell: echo {{ params.asset }}
    inputs: ["{{ params.asset }}"]
    outputs: [file:///data/again.csv]
"""


@pytest.fixture
def folder(write_pipeline, write_module):
    module = write_module(STEPS)
    write_pipeline("upstream.yaml", UPSTREAM.format(module=module))
    write_pipeline("failing.yaml", FAILING.format(module=module))
    return write_pipeline


def uses(history: list[Any]) -> set[tuple[str, str, str, str]]:
    return {(u.asset, u.direction, u.pipeline, u.task_id) for _, u in history}


async def test_declared_and_reported_assets_of_successful_tasks_are_recorded(
    folder, start_reactor, store
) -> None:
    async with start_reactor() as reactor:
        run = await reactor.run_now("upstream", {})
        failed = await reactor.run_now("failing", {})
        assert (await wait_run(store, run.id)).status == "succeeded"
        assert (await wait_run(store, failed.id)).status == "failed"

    listed = {a.asset: a for a in await store.list_assets(limit=100)}
    assert sorted(listed) == [
        "file:///data/out.csv",
        "kafka://cluster/loaded",
        "orders_d1",
        "postgres://warehouse/public.customers",
        "postgres://warehouse/public.orders",
        "s3://bucket/raw/x.json",
    ]
    out = listed["file:///data/out.csv"]
    assert out.writes == 1
    assert out.reads == 0
    assert out.writers == (("upstream", "extract"),)
    assert out.last_write is not None
    assert out.last_write.run_id == run.id
    assert listed["kafka://cluster/loaded"].writers == (("upstream", "child"),)
    assert listed["postgres://warehouse/public.orders"].readers == (("upstream", "load"),)
    assert listed["s3://bucket/raw/x.json"].readers == (("upstream", "extract"),)
    history = await store.asset_history("orders_d1", limit=10)
    assert uses(history) == {("orders_d1", "write", "upstream", "load")}
    assert history[0][1].attempt == 1
    # The failed task wrote nothing that counts.
    assert await store.asset_history("never_written", limit=10) == []
    assert await store.asset_history("declared_but_failed", limit=10) == []


async def test_on_asset_starts_the_reader_once_per_write(folder, start_reactor, store) -> None:
    folder("downstream.yaml", DOWNSTREAM)
    async with start_reactor() as reactor:
        first = await reactor.run_now("upstream", {})
        second = await reactor.run_now("upstream", {"out": "/data/other.csv"})
        ignored = await reactor.run_now("upstream", {"out": "/elsewhere/x.csv"})
        for run in (first, second, ignored):
            await wait_run(store, run.id)

        async def two_runs() -> bool:
            runs = await store.list_runs(pipeline="downstream", limit=10, before=None)
            return len(runs) == 2 and all(r.status == "succeeded" for r in runs)

        await wait_for(two_runs, message="two downstream runs")
        downstream = await store.list_runs(pipeline="downstream", limit=10, before=None)
        # Each run names the asset event that started it.
        started_by = sorted(e for r in downstream for e in r.event_ids)
        events = [await store.find_event(e) for e in started_by]
        assert sorted(e.event.subject for e in events if e) == [
            "file:///data/other.csv",
            "file:///data/out.csv",
        ]
        assert all(e.event.source == ASSET_EVENT_SOURCE for e in events if e)
        assert {r.trigger for r in downstream} == {"downstream/asset"}
    assert uses(await store.asset_history("file:///data/out.csv", limit=10)) == {
        ("file:///data/out.csv", "write", "upstream", "extract"),
        ("file:///data/out.csv", "read", "downstream", "read"),
    }


async def test_a_pipeline_is_not_started_by_its_own_writes(folder, start_reactor, store) -> None:
    folder("downstream.yaml", DOWNSTREAM_BY_NAME)
    async with start_reactor() as reactor:
        run = await reactor.run_now("upstream", {})
        await wait_run(store, run.id)

        async def ran() -> bool:
            runs = await store.list_runs(pipeline="downstream", limit=10, before=None)
            # Two writes match: the file and the kafka topic.
            return len(runs) == 2 and all(r.status == "succeeded" for r in runs)

        await wait_for(ran, message="the downstream runs")
        downstream = await store.list_runs(pipeline="downstream", limit=10, before=None)
        assert sorted(r.params["asset"] for r in downstream) == [
            "file:///data/out.csv",
            "kafka://cluster/loaded",
        ]
        # Each wrote file:///data/again.csv, which matches its own trigger: recorded as
        # evaluated, started nothing.
        again = await store.asset_history("file:///data/again.csv", limit=10)
        assert len(again) == 2

        async def evaluated() -> bool:
            found = await store.list_events(limit=100, type_pattern="reactor.asset.updated")
            mine = [e for e in found if e.event.subject == "file:///data/again.csv"]
            return len(mine) == 2 and all(e.outcome is not None for e in mine)

        await wait_for(evaluated, message="the own writes to be evaluated")
        assert len(await store.list_runs(pipeline="downstream", limit=10, before=None)) == 2


async def test_the_api_and_pages_list_assets_and_page_history(folder, start_reactor, store) -> None:
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        for _ in range(3):
            run = await reactor.run_now("upstream", {})
            await wait_run(store, run.id)
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            listed = (await client.get("/api/assets")).json()
            first = await client.get(
                "/api/assets/" + quote("file:///data/out.csv", safe=""), params={"limit": 2}
            )
            link = first.headers["link"]
            rest = await client.get(link[1 : link.index(">")])
            # Any spelling of an asset finds it; a malformed one is refused.
            spelled = await client.get("/api/assets/postgresql://Warehouse/Public.Orders")
            bad = await client.get("/api/assets/file://relative")
            unknown = await client.get("/api/assets/nobody_wrote_this")
            limited = await client.get("/api/assets", params={"limit": 0})
            page = await client.get("/assets")
            one = await client.get("/assets/" + quote("file:///data/out.csv", safe=""))
            missing = await client.get("/assets/nobody_wrote_this")

    by_name = {a["asset"]: a for a in listed}
    out = by_name["file:///data/out.csv"]
    assert out["writes"] == 3
    assert out["writers"] == [{"pipeline": "upstream", "task": "extract"}]
    assert out["last_write"]["run_id"] == run.id
    assert out["last_write"]["direction"] == "write"
    assert first.status_code == 200
    assert len(first.json()) == 2
    assert first.json()[0]["run_id"] == run.id
    assert first.json()[0]["seq"] > first.json()[1]["seq"]
    assert rest.status_code == 200
    assert len(rest.json()) == 1
    assert rest.json()[0]["seq"] < first.json()[1]["seq"]
    assert "link" not in rest.headers
    assert spelled.status_code == 200
    assert {u["asset"] for u in spelled.json()} == {"postgres://warehouse/public.orders"}
    assert bad.status_code == 422
    assert bad.json() == {
        "error": "asset 'file://relative': a file URI needs an absolute path,"
        " file:///data/orders.csv (three slashes)"
    }
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no task has read or written asset 'nobody_wrote_this'"}
    assert limited.status_code == 422
    assert page.status_code == 200
    assert 'aria-current="page" aria-keyshortcuts="g a">Assets</a>' in page.text
    assert 'data-asset="file:///data/out.csv"' in page.text
    assert 'data-kind="task"' in page.text
    assert "upstream · extract" in page.text
    assert one.status_code == 200
    assert one.text.count('data-direction="write"') == 3
    assert f'href="/runs/{run.id}?task=extract"' in one.text
    assert missing.status_code == 404


class Receiver:
    """An OpenLineage endpoint on 127.0.0.1: keeps every event; the first ``fail_first``
    requests get a 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.refused = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path != "/api/v1/lineage":
                    self.send_response(404)
                elif receiver.refused < receiver.fail_first:
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.events.append(json.loads(body))
                    receiver.headers.append(dict(self.headers))
                    self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(fail_first=1)
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        thread.join(timeout=10)


async def test_openlineage_events_reach_the_receiver_in_order(
    folder, start_reactor, store, receiver, pipelines_dir, monkeypatch
) -> None:
    monkeypatch.setenv("OL_TEST_KEY", "sesame")
    (pipelines_dir / "reactor.yaml").write_text(
        f"lineage:\n  openlineage: {{url: '{receiver.url}/', namespace: shop,"
        " api_key: env:OL_TEST_KEY}\n"
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("upstream", {})
        failed = await reactor.run_now("failing", {})
        await wait_run(store, run.id)
        await wait_run(store, failed.id)
        # Three tasks and one that fails: a START and an end each.
        await wait_for(lambda: len(receiver.events) == 8, message="8 OpenLineage events")
        assert reactor.lineage is not None
        assert reactor.lineage.dropped == 0
    assert receiver.refused == 1  # the first try failed and was sent again
    assert {h["Authorization"] for h in receiver.headers} == {"Bearer sesame"}
    by_job: dict[str, list[dict[str, Any]]] = {}
    for event in receiver.events:
        assert event["schemaURL"] == SCHEMA_URL
        assert event["producer"].startswith("https://")
        assert event["job"]["namespace"] == "shop"
        by_job.setdefault(event["job"]["name"], []).append(event)
    assert sorted(by_job) == ["failing.boom", "upstream.child", "upstream.extract", "upstream.load"]
    for name, events in by_job.items():
        kinds = [e["eventType"] for e in events]
        assert kinds == (["START", "FAIL"] if name == "failing.boom" else ["START", "COMPLETE"])
        assert events[0]["eventTime"] <= events[1]["eventTime"]
        assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
    extract = by_job["upstream.extract"]
    assert extract[0]["run"]["runId"] == attempt_run_id(run.id, "extract", 1)
    # START knows what was declared; COMPLETE adds what the task reported.
    assert extract[0]["inputs"] == [
        {"namespace": "postgres://warehouse", "name": "public.customers", "facets": {}}
    ]
    assert extract[1]["inputs"] == [
        {"namespace": "postgres://warehouse", "name": "public.customers", "facets": {}},
        {"namespace": "s3://bucket", "name": "raw/x.json", "facets": {}},
    ]
    assert extract[1]["outputs"] == [{"namespace": "file", "name": "/data/out.csv", "facets": {}}]
    assert by_job["upstream.load"][1]["outputs"] == [
        {"namespace": "shop", "name": "orders_d1", "facets": {}}
    ]
    fail = by_job["failing.boom"][1]
    assert fail["run"]["facets"]["errorMessage"]["message"] == "RuntimeError: no luck"
    assert fail["run"]["facets"]["parent"]["job"] == {"namespace": "shop", "name": "failing"}


async def test_an_unreachable_endpoint_never_holds_up_a_task(
    folder, start_reactor, store, pipelines_dir
) -> None:
    # Nothing listens on port 9 of 127.0.0.1 (discard): every send fails at once.
    (pipelines_dir / "reactor.yaml").write_text(
        "lineage:\n  openlineage: {url: 'http://127.0.0.1:9', retries: 1, max_queue: 2}\n"
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("upstream", {})
        assert (await wait_run(store, run.id)).status == "succeeded"
        assert reactor.lineage is not None
        await wait_for(
            lambda: reactor.lineage is not None and reactor.lineage.dropped == 6,
            message="every event dropped",
        )
    assert reactor.lineage.sent == 0
