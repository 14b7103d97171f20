"""The UI's live hub: messages by topic, slow watchers dropped, every stream ended at a stop."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest

from reactor.events import Event
from reactor.store.records import RunRecord, TaskRecord
from reactor.ui.hub import EVENTS, RUNS, LiveHub, run_topic

pytestmark = pytest.mark.anyio

START = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)


def run(run_id: str = "r1", status: str = "running") -> RunRecord:
    return RunRecord(
        id=run_id,
        run_key=f"p/manual@{run_id}",
        pipeline="p",
        version="v1",
        status=status,
        params={},
        trigger=None,
        event_ids=[],
        created_at=START,
        started_at=START,
        reason="because",
    )


def task(task_id: str = "extract", status: str = "running") -> TaskRecord:
    return TaskRecord(
        run_id="r1",
        task_id=task_id,
        status=status,
        attempts=2,
        started_at=START,
        error="it broke" if status == "failed" else None,
    )


async def drain(receive: anyio.abc.ObjectReceiveStream[object]) -> list[object]:
    """Everything left in a stream that has been closed on the sending side."""
    got = []
    with anyio.fail_after(5):
        async for message in receive:
            got.append(message)
    return got


async def test_a_message_reaches_the_watchers_of_its_topic_only() -> None:
    hub = LiveHub()
    async with (
        hub.subscribe("a") as first,
        hub.subscribe("a") as second,
        hub.subscribe("b") as other,
    ):
        hub.publish("a", ("ping", {"n": 1}))
        hub.publish("b", ("pong", {"n": 2}))
        hub.publish("c", ("lost", {"n": 3}))
        with anyio.fail_after(5):
            assert await first.receive() == ("ping", {"n": 1})
            assert await second.receive() == ("ping", {"n": 1})
            assert await other.receive() == ("pong", {"n": 2})
        assert first.statistics().current_buffer_used == 0
        assert other.statistics().current_buffer_used == 0
        assert not hub.watched("c")


async def test_leaving_a_topic_forgets_it() -> None:
    hub = LiveHub()
    async with hub.subscribe("a"):
        assert hub.watched("a")
        async with hub.subscribe("a"):
            pass
        assert hub.watched("a")  # the first watcher is still there
    assert not hub.watched("a")
    hub.publish("a", ("ping", {}))  # nobody: nothing happens
    assert not hub.watched("a")


async def test_a_watcher_that_falls_behind_is_closed_and_the_others_go_on() -> None:
    hub = LiveHub(capacity=3)
    async with hub.subscribe(RUNS) as slow, hub.subscribe(RUNS) as keeping_up:
        for n in range(3):
            hub.publish(RUNS, ("run", {"n": n}))
            with anyio.fail_after(5):
                assert await keeping_up.receive() == ("run", {"n": n})
        # The slow one's queue is full: the next message closes it.
        hub.publish(RUNS, ("run", {"n": 3}))
        hub.publish(RUNS, ("run", {"n": 4}))
        # What it had queued it still gets, then its stream ends.
        assert await drain(slow) == [("run", {"n": n}) for n in range(3)]
        with anyio.fail_after(5):
            assert await keeping_up.receive() == ("run", {"n": 3})
            assert await keeping_up.receive() == ("run", {"n": 4})
        hub.publish(RUNS, ("run", {"n": 5}))
        with anyio.fail_after(5):
            assert await keeping_up.receive() == ("run", {"n": 5})


async def test_close_all_ends_every_stream() -> None:
    hub = LiveHub()
    async with (
        hub.subscribe(RUNS) as runs,
        hub.subscribe(run_topic("r1")) as one,
        hub.subscribe(EVENTS) as events,
    ):
        hub.publish(RUNS, ("run", {"n": 1}))
        ended: list[str] = []

        async def wait_end(name: str, receive: anyio.abc.ObjectReceiveStream[object]) -> None:
            async for _ in receive:
                pass
            ended.append(name)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_end, "runs", runs)
                tg.start_soon(wait_end, "one", one)
                tg.start_soon(wait_end, "events", events)
                await anyio.wait_all_tasks_blocked()
                hub.close_all()
        assert sorted(ended) == ["events", "one", "runs"]
        for topic in (RUNS, run_topic("r1"), EVENTS):
            assert not hub.watched(topic)


async def test_changes_nobody_watches_create_no_subscription() -> None:
    hub = LiveHub()
    hub.run_changed(run())
    hub.task_changed(run(), task(), "started")
    hub.event_decided(Event(type="x", source="s"), [])
    hub.publish("run:r1", ("run", {}))
    assert hub._topics == {}
    assert not hub.watched(RUNS)
    assert not hub.watched(run_topic("r1"))
    assert not hub.watched(EVENTS)


async def test_run_changes_go_to_the_runs_list_and_the_runs_page() -> None:
    hub = LiveHub()
    ended = run(status="succeeded")
    ended.ended_at = START.replace(minute=5)
    async with (
        hub.subscribe(RUNS) as every,
        hub.subscribe(run_topic("r1")) as mine,
        hub.subscribe(run_topic("r2")) as others,
    ):
        hub.run_changed(ended)
        expected = (
            "run",
            {
                "id": "r1",
                "pipeline": "p",
                "status": "succeeded",
                "started_at": "2026-11-26T13:00:00+00:00",
                "ended_at": "2026-11-26T13:05:00+00:00",
                "reason": "because",
            },
        )
        with anyio.fail_after(5):
            assert await every.receive() == expected
            assert await mine.receive() == expected
        assert others.statistics().current_buffer_used == 0


async def test_a_run_change_reaches_a_runs_page_even_when_no_list_watches() -> None:
    hub = LiveHub()
    async with hub.subscribe(run_topic("r1")) as mine:
        hub.run_changed(run())
        with anyio.fail_after(5):
            kind, payload = await mine.receive()
    assert (kind, payload["id"], payload["status"], payload["ended_at"]) == (
        "run",
        "r1",
        "running",
        None,
    )
    assert not hub.watched(RUNS)


async def test_task_changes_go_to_their_runs_page_only() -> None:
    hub = LiveHub()
    async with hub.subscribe(RUNS) as every, hub.subscribe(run_topic("r1")) as mine:
        hub.task_changed(run(), task(status="failed"), "attempt 2 failed")
        with anyio.fail_after(5):
            message = await mine.receive()
        assert every.statistics().current_buffer_used == 0
    assert message == (
        "task",
        {
            "task_id": "extract",
            "status": "failed",
            "attempts": 2,
            "started_at": "2026-11-26T13:00:00+00:00",
            "ended_at": None,
            "error": "it broke",
            "note": "attempt 2 failed",
        },
    )


async def test_decided_events_go_to_the_events_page() -> None:
    hub = LiveHub()
    event = Event(type="file.created", source="files", id="e-1", data={"name": "a.csv"})
    outcome = [{"trigger": "p/file", "fired": True, "run_id": "r1"}]
    async with hub.subscribe(EVENTS) as events:
        hub.event_decided(event, outcome)
        with anyio.fail_after(5):
            assert await events.receive() == ("event", {"event": event, "outcome": outcome})
