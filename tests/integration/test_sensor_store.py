"""What sensors keep in every store: event batches with their cursor, cursors, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reactor.events import Event
from reactor.store import Store
from reactor.store.records import DeadLetter

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SOURCE = "reactor/sensors/orders/topic"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(event_id: str, n: int = 0) -> Event:
    return Event("orders.new", SOURCE, {"n": n}, id=event_id, time=T0)


# --- ingest_many ---------------------------------------------------------------------------------


async def test_a_batch_stores_its_new_events_and_says_which_were_known(store: Store) -> None:
    assert await store.ingest(event("e1"), at(0)) == ("e1", True)
    results = await store.ingest_many([event("e1"), event("e2", 2), event("e3", 3)], at(1))
    assert results == [("e1", False), ("e2", True), ("e3", True)]
    stored = await store.get_event(SOURCE, "e2")
    assert stored is not None
    assert stored.event == event("e2", 2)
    assert stored.received_at == at(1)
    # The same batch again, as after a sensor restarted before acknowledging it.
    again = await store.ingest_many([event("e2"), event("e3")], at(2))
    assert again == [("e2", False), ("e3", False)]
    # Stored, not yet evaluated: the rule engine (or recovery after a crash) takes them on.
    pending = await store.unevaluated_events(10)
    assert [e.event.id for e in pending] == ["e1", "e2", "e3"]


async def test_the_same_event_twice_in_one_batch_is_new_once(store: Store) -> None:
    results = await store.ingest_many([event("e1"), event("e2"), event("e1"), event("e1")], at(0))
    assert results == [("e1", True), ("e2", True), ("e1", False), ("e1", False)]
    other_source = Event("orders.new", "elsewhere", id="e1", time=T0)
    assert await store.ingest_many([other_source, event("e1")], at(1)) == [
        ("e1", True),
        ("e1", False),
    ]


async def test_the_cursor_is_saved_with_the_batch(store: Store) -> None:
    assert await store.get_cursor("orders/topic") is None
    cursor = {"partitions": {"0": 41, "1": 7}, "topic": "orders"}
    results = await store.ingest_many([event("e1"), event("e2")], at(0), ("orders/topic", cursor))
    assert results == [("e1", True), ("e2", True)]
    assert await store.get_cursor("orders/topic") == cursor
    # A batch of only duplicates still moves the cursor on.
    await store.ingest_many([event("e1")], at(1), ("orders/topic", {"partitions": {"0": 42}}))
    assert await store.get_cursor("orders/topic") == {"partitions": {"0": 42}}


async def test_no_cursor_leaves_the_saved_one(store: Store) -> None:
    await store.ingest_many([event("e1")], at(0), ("orders/topic", 10))
    assert await store.ingest_many([event("e2")], at(1)) == [("e2", True)]
    assert await store.ingest_many([event("e3")], at(2), None) == [("e3", True)]
    assert await store.get_cursor("orders/topic") == 10


async def test_an_empty_batch_may_move_the_cursor_alone(store: Store) -> None:
    assert await store.ingest_many([], at(0)) == []
    assert await store.ingest_many([], at(0), ("orders/topic", "2026-03-01T12:00:00")) == []
    assert await store.get_cursor("orders/topic") == "2026-03-01T12:00:00"


# --- cursors -------------------------------------------------------------------------------------


async def test_cursors_are_per_trigger_and_keep_their_json_shape(store: Store) -> None:
    values = {
        "a/number": 12,
        "a/text": "row 9",
        "b/list": [1, "two", None, 3.5],
        "b/nested": {"watermark": "2026-03-01", "ids": [1, 2], "done": False},
    }
    for key, value in values.items():
        await store.save_cursor(key, value, at(0))
    for key, value in values.items():
        assert await store.get_cursor(key) == value
    await store.save_cursor("a/number", 13, at(1))
    assert await store.get_cursor("a/number") == 13
    assert await store.get_cursor("a/text") == "row 9"
    assert await store.get_cursor("c/never") is None


# --- dead letters --------------------------------------------------------------------------------


def letter(trigger: str, n: int, payload: object = None) -> DeadLetter:
    return DeadLetter(
        trigger, f"bad message {n}", payload if payload is not None else {"n": n}, at(n), f"p/{n}"
    )


async def test_dead_letters_come_back_newest_first_with_their_payload(store: Store) -> None:
    payload = {"raw": "not json: {", "headers": [["k", "v"]], "n": 1.5, "ok": None}
    first = await store.add_dead_letter(letter("orders/topic", 1, payload))
    second = await store.add_dead_letter(
        DeadLetter("orders/topic", "no id column", "plain text", at(2))
    )
    assert second > first
    found = await store.dead_letters()
    assert found == [
        DeadLetter("orders/topic", "no id column", "plain text", at(2), None, second),
        DeadLetter("orders/topic", "bad message 1", payload, at(1), "p/1", first),
    ]
    assert found[1].to_json() == {
        "seq": first,
        "trigger": "orders/topic",
        "ref": "p/1",
        "reason": "bad message 1",
        "payload": payload,
        "time": "2026-03-01T12:00:01+00:00",
    }


async def test_dead_letters_by_trigger_and_by_page(store: Store) -> None:
    seqs = {}
    for n in range(1, 8):
        trigger = "orders/topic" if n % 2 else "rows/table"
        seqs[n] = await store.add_dead_letter(letter(trigger, n))
    assert [d.seq for d in await store.dead_letters()] == [seqs[n] for n in range(7, 0, -1)]
    orders = await store.dead_letters("orders/topic")
    assert [d.reason for d in orders] == [f"bad message {n}" for n in (7, 5, 3, 1)]
    assert {d.trigger_key for d in await store.dead_letters("rows/table")} == {"rows/table"}
    assert await store.dead_letters("nobody/here") == []

    page = await store.dead_letters("orders/topic", limit=2)
    assert [d.seq for d in page] == [seqs[7], seqs[5]]
    page = await store.dead_letters("orders/topic", limit=2, before=page[-1].seq)
    assert [d.seq for d in page] == [seqs[3], seqs[1]]
    assert await store.dead_letters("orders/topic", limit=2, before=page[-1].seq) == []
    assert [d.seq for d in await store.dead_letters(limit=3, before=seqs[4])] == [
        seqs[3],
        seqs[2],
        seqs[1],
    ]


async def test_a_payload_that_is_not_json_is_kept_as_text(store: Store) -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    await store.add_dead_letter(DeadLetter("t/x", "odd", {"at": when, "raw": b"\x00"}, at(0)))
    (found,) = await store.dead_letters("t/x")
    assert found.payload == {"at": str(when), "raw": str(b"\x00")}
