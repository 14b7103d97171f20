"""The UI's Server-Sent Events read over real HTTP: a run's changes, all runs, decided events,
a task's log tail, and every stream ending when the service stops."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from helpers import wait_for

from reactor.store import Store
from reactor.store.records import FINAL_RUN_STATES

from .support import wait_run
from .test_ui_pages import Page, ui_client

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

Message = tuple[str, Any]

# Each task waits for the test to open the fifo for writing: no polling, no sleep.
GATED = """
name: gated
tasks:
  - id: wait
    shell: "echo one; echo two; cat FIFO; echo three"
  - id: each
    needs: wait
    for_each: [a, b]
    task:
      shell: "echo item {{ item }}"
  - id: after
    needs: each
    shell: echo after
"""

QUICK = """
name: quick
tasks:
  - id: only
    shell: echo quick
"""

# Listens to quick's ends, so the rule engine decides them (and the hub hears of them).
FOLLOW = """
name: follow
triggers:
  - on: pipeline
    pipeline: quick
tasks:
  - id: next
    shell: echo next
"""


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """One store is enough here: the streams read what the service tells the hub."""
    return f"sqlite:///{tmp_path / 'state' / 'reactor.db'}"


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "gate.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def ui(write_pipeline, start_reactor, fifo: Path):
    write_pipeline("gated.yaml", GATED.replace("FIFO", str(fifo)))
    write_pipeline("quick.yaml", QUICK)
    write_pipeline("follow.yaml", FOLLOW)
    return lambda **settings: ui_client(start_reactor, **settings)


async def release(fifo: Path) -> None:
    """Let the gated task go on: open the fifo for writing (its reader waits on it)."""

    def write() -> None:
        with fifo.open("w") as gate:
            gate.write("open\n")

    with anyio.fail_after(10):
        await anyio.to_thread.run_sync(write, abandon_on_cancel=True)


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """``(event, data)`` of each message of a text/event-stream; comments are skipped."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    kind: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if kind is not None:
                yield kind, json.loads("\n".join(data))
            kind, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))


async def next_message(stream: AsyncIterator[Message], timeout: float = 10) -> Message:
    with anyio.fail_after(timeout):
        return await anext(stream)


async def task_running(store: Store, run_id: str, task_id: str) -> None:
    async def running() -> bool:
        tasks = {t.task_id: t.status for t in await store.task_runs(run_id)}
        return tasks.get(task_id) == "running"

    await wait_for(running, message=f"task {task_id} of run {run_id} to run")


async def test_a_run_stream_sends_a_snapshot_then_each_change(ui, store, fifo: Path) -> None:
    async with ui() as (reactor, client):
        run = await reactor.run_now("gated")
        await task_running(store, run.id, "wait")
        async with client.stream("GET", f"/ui/stream/runs/{run.id}") as response:
            stream = messages(response)
            kind, snapshot = await next_message(stream)
            await release(fifo)
            changes: list[Message] = []
            while not (
                changes and changes[-1][0] == "run" and changes[-1][1]["status"] in FINAL_RUN_STATES
            ):
                changes.append(await next_message(stream))

    assert kind == "snapshot"
    assert snapshot["run"]["id"] == run.id
    assert snapshot["run"]["status"] == "running"
    tasks = {t["task_id"]: t["status"] for t in snapshot["tasks"]}
    assert tasks["wait"] == "running"
    assert set(tasks) <= {"wait", "each", "after"}
    task_changes = [(p["task_id"], p["status"]) for k, p in changes if k == "task"]
    assert ("wait", "succeeded") in task_changes
    assert ("each", "succeeded") in task_changes
    assert ("after", "succeeded") in task_changes
    # A loop's iterations are not nodes of the graph: their changes are not sent.
    assert not [t for t, _ in task_changes if "[" in t]
    assert task_changes.index(("wait", "succeeded")) < task_changes.index(("after", "succeeded"))
    assert changes[-1] == ("run", changes[-1][1])
    assert (changes[-1][1]["id"], changes[-1][1]["status"]) == (run.id, "succeeded")


async def test_a_stream_of_an_unknown_run_says_gone_and_ends(ui) -> None:
    async with ui() as (_reactor, client), client.stream("GET", "/ui/stream/runs/nope") as answer:
        got = [m async for m in messages(answer)]
    assert got == [("gone", {"run_id": "nope"})]


async def test_the_runs_stream_sends_every_runs_changes(ui, store) -> None:
    async with ui() as (reactor, client), client.stream("GET", "/ui/stream/runs") as response:
        stream = messages(response)
        assert await next_message(stream) == ("hello", {})
        run = await reactor.run_now("quick")
        seen: list[Message] = []
        # Until quick's end (its end then starts a run of follow: that one is sent too).
        while not (
            seen and seen[-1][1]["id"] == run.id and seen[-1][1]["status"] in FINAL_RUN_STATES
        ):
            seen.append(await next_message(stream))
    assert {kind for kind, _ in seen} == {"run"}
    mine = [(p["pipeline"], p["status"]) for _, p in seen if p["id"] == run.id]
    assert mine[-1] == ("quick", "succeeded")
    assert ("quick", "running") in mine


async def test_the_events_stream_sends_recent_then_new_events_that_pass_its_filter(
    ui, store
) -> None:
    async def publish(client: httpx.AsyncClient, **event: Any) -> None:
        response = await client.post("/api/events", json=event)
        assert response.status_code == 202, response.text

    async with ui() as (_reactor, client):
        await publish(client, type="note.old", id="n-old", source="tests")
        await publish(client, type="note.older", id="n-older", source="elsewhere")

        async def stored() -> bool:
            return await store.get_event("elsewhere", "n-older") is not None

        await wait_for(stored, message="the events to be stored")
        path = "/ui/stream/events?type=note.*&source=tests"
        async with client.stream("GET", path) as response:
            stream = messages(response)
            first = await next_message(stream)
            # Not its type, then not its source, then one that is both.
            await publish(client, type="other.thing", id="o-1", source="tests")
            await publish(client, type="note.new", id="n-x", source="elsewhere")
            await publish(client, type="note.new", id="n-new", source="tests")
            second = await next_message(stream)

    assert first[0] == "event"
    assert Page(first[1]["html"]).find("a", href="/events/n-old?source=tests")
    assert first[1]["html"].startswith("<tr id=")
    assert second[0] == "event"
    row = Page(second[1]["html"])
    assert row.find("a", href="/events/n-new?source=tests")
    assert "note.new" in row.text
    assert "no trigger listens" in row.text


async def test_the_events_stream_hides_reactors_own_events_unless_asked(ui, store) -> None:
    async with ui() as (reactor, client):
        path = "/ui/stream/events?internal=true&type=reactor.run.*"
        async with client.stream("GET", path) as response:
            stream = messages(response)
            run = await reactor.run_now("quick")
            kind, payload = await next_message(stream)
        await wait_run(store, run.id)
        [follow] = await store.list_runs(pipeline="follow", limit=5, before=None)
        await wait_run(store, follow.id)
        async with client.stream("GET", "/ui/stream/events") as response:
            stream = messages(response)
            await client.post("/api/events", json={"type": "mark", "id": "m-1", "source": "t"})
            # The run's and its task's end events were stored before: the first row shown
            # is the mark, so they were left out of the recent ones too.
            first = await next_message(stream)

    assert kind == "event"
    row = Page(payload["html"])
    assert "reactor.run.succeeded" in row.text
    [link] = [a["href"] for a in row.find("a", href=None) if a["href"].startswith("/events/")]
    assert link.startswith(f"/events/{run.id}?source=")
    assert "fired 1" in row.text and follow.id in row.text
    assert Page(first[1]["html"]).find("a", href="/events/m-1?source=t")


async def test_a_log_tail_sends_lines_as_they_come_then_end(ui, store, fifo: Path) -> None:
    async with ui() as (reactor, client):
        run = await reactor.run_now("gated")
        await task_running(store, run.id, "wait")
        path = f"/ui/stream/runs/{run.id}/tasks/wait/logs"
        async with client.stream("GET", path, params={"after": 0}) as response:
            stream = messages(response)
            lines: list[dict[str, Any]] = []
            while [x["line"] for x in lines if x["stream"] == "stdout"] != ["one", "two"]:
                kind, batch = await next_message(stream)
                assert kind == "lines"
                lines.extend(batch)
            await release(fifo)
            rest: list[Message] = []
            while not (rest and rest[-1][0] == "end"):
                rest.append(await next_message(stream))
        ended = await wait_run(store, run.id)
        after_two = lines[-1]["seq"]
        async with client.stream("GET", path, params={"after": after_two}) as response:
            replayed = [m async for m in messages(response)]
        async with client.stream("GET", f"/ui/stream/runs/{run.id}/tasks/after/logs") as response:
            other = [m async for m in messages(response)]

    assert ended.status == "succeeded"
    more = [x for kind, batch in rest[:-1] if kind == "lines" for x in batch]
    # cat echoes what the test wrote into the fifo, then the shell goes on.
    assert [x["line"] for x in more if x["stream"] == "stdout"] == ["open", "three"]
    assert rest[-1] == ("end", {"after": more[-1]["seq"]})
    seqs = [x["seq"] for x in lines + more]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(x["attempt"] == 1 for x in lines + more)
    # From a given seq on, the finished task's lines are sent at once, then the end.
    assert [k for k, _ in replayed] == ["lines", "end"]
    assert [x["line"] for x in replayed[0][1] if x["stream"] == "stdout"] == ["open", "three"]
    # Only the asked task's lines.
    assert [x["line"] for x in other[0][1] if x["stream"] == "stdout"] == ["after"]
    assert other[-1][0] == "end"


async def test_open_streams_end_when_the_service_stops(write_pipeline, start_reactor) -> None:
    write_pipeline("quick.yaml", QUICK)
    got: dict[str, list[Message]] = {}
    paths = ["/ui/stream/runs", "/ui/stream/events"]

    async def read(
        client: httpx.AsyncClient, base: str, path: str, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        async with client.stream("GET", base + path) as response:
            stream = messages(response)
            got[path] = [await next_message(stream)]
            task_status.started()
            try:
                async for message in stream:
                    got[path].append(message)
            except httpx.RemoteProtocolError:
                got[path].append(("cut", None))
        got[path].append(("closed", None))

    # The readers outlive the service: the task group waits for their streams to end.
    with anyio.fail_after(30):
        async with (
            httpx.AsyncClient(timeout=None) as client,
            anyio.create_task_group() as tg,
            start_reactor(http=("127.0.0.1", 0)) as reactor,
        ):
            base = f"http://127.0.0.1:{reactor.http_port}"
            event = {"type": "x", "id": "e", "source": "t"}
            assert (await client.post(base + "/api/events", json=event)).status_code == 202

            async def decided() -> bool:
                stored = await reactor.store.get_event("t", "e")
                return stored is not None and stored.evaluated_at is not None

            await wait_for(decided, message="the event to be decided")
            for path in paths:
                await tg.start(read, client, base, path)
            # Leaving the block stops the service first, then waits for the readers.
    for path in paths:
        assert got[path][-1] == ("closed", None), got[path]
        assert ("cut", None) not in got[path], got[path]
    assert got["/ui/stream/runs"][0] == ("hello", {})
    assert got["/ui/stream/events"][0][0] == "event"


async def test_the_stream_reads_a_type_filter_as_the_events_page_does(ui, store) -> None:
    # Only ``*`` is special: ``?`` and ``[...]`` are themselves, as in the store's list.
    pattern = "note.[ab]?*"
    async with ui() as (_reactor, client):
        async with client.stream("GET", "/ui/stream/events", params={"type": pattern}) as answer:
            stream = messages(answer)
            for event_id, kind in (("n-1", "note.a1"), ("n-2", "note.[ab]?-literal")):
                event = {"type": kind, "id": event_id, "source": "tests"}
                assert (await client.post("/api/events", json=event)).status_code == 202
            live = await next_message(stream)
        page = Page((await client.get("/events", params={"type": pattern})).text)

    assert Page(live[1]["html"]).find("a", href="/events/n-2?source=tests")
    listed = [a["href"] for a in page.find("a", href=None) if a["href"].startswith("/events/n")]
    assert listed == ["/events/n-2?source=tests"]
