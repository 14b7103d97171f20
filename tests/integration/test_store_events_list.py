"""Store.list_events (newest first, paged by seq, filtered) and Store.logs of one task, on
every store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from reactor.events import Event
from reactor.store import LogLine, Store, StoredEvent

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(n: int, type_: str = "order.created", source: str = "shop") -> Event:
    return Event(type=type_, source=source, id=f"e{n}", time=at(n), subject=f"s{n}", data={"n": n})


async def stored(store: Store, *events: Event) -> None:
    results = await store.ingest_many(events, at(1000))
    assert all(new for _, new in results)


def ids(found: list[StoredEvent]) -> list[str]:
    return [s.event.id for s in found]


async def test_events_are_listed_newest_first_and_paged_with_before(store: Store) -> None:
    events = [event(n) for n in range(25)]
    await stored(store, *events[:10])
    await store.ingest(events[10], at(1001), evaluated=True)
    await stored(store, *events[11:])

    pages: list[list[StoredEvent]] = []
    before: int | None = None
    while page := await store.list_events(limit=10, before=before):
        pages.append(page)
        before = page[-1].seq
    assert [len(p) for p in pages] == [10, 10, 5]
    walked = [s for page in pages for s in page]
    assert ids(walked) == [f"e{n}" for n in reversed(range(25))]
    seqs = [s.seq for s in walked]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 25
    # The rows decode to what was stored.
    newest = walked[0]
    assert newest.event == events[24]
    assert (newest.received_at, newest.outcome, newest.evaluated_at) == (at(1000), None, None)
    evaluated = walked[14]
    assert evaluated.event == events[10]
    assert (evaluated.received_at, evaluated.outcome, evaluated.evaluated_at) == (
        at(1001),
        [],
        at(1001),
    )
    # ``before`` is exclusive: the event with that seq is not on the page.
    middle = walked[12]
    after_middle = await store.list_events(limit=3, before=middle.seq)
    assert [s.seq for s in after_middle] == seqs[13:16]
    assert await store.list_events(limit=10, before=walked[-1].seq) == []


async def test_an_empty_store_lists_no_events(store: Store) -> None:
    assert await store.list_events(limit=10) == []
    assert await store.list_events(limit=10, type_pattern="*", source="shop") == []


async def test_the_outcome_recorded_for_an_event_is_listed(store: Store) -> None:
    await stored(store, event(1))
    decisions = [{"trigger": "orders/placed", "outcome": "fired", "run_id": "r1"}]
    await store.record_outcome(event(1), decisions, [], at(2000))

    [listed] = await store.list_events(limit=1)
    assert (listed.outcome, listed.evaluated_at) == (decisions, at(2000))


async def test_the_type_filter_is_an_exact_type_or_a_star_glob(store: Store) -> None:
    types = [
        "file.created",
        "file.created.v2",
        "file.deleted",
        "order.created",
        "File.created",
        "files",
        "file.",
    ]
    await stored(store, *(event(n, t) for n, t in enumerate(types)))

    async def matching(pattern: str) -> list[str]:
        found = await store.list_events(limit=100, type_pattern=pattern)
        return [s.event.type for s in found]

    assert await matching("file.created") == ["file.created"]
    assert await matching("file.*") == ["file.", "file.deleted", "file.created.v2", "file.created"]
    assert await matching("*.created") == ["File.created", "order.created", "file.created"]
    assert await matching("f*e*d") == ["file.deleted", "file.created"]
    assert await matching("*") == list(reversed(types))
    # Case counts, as in a trigger's glob (SQLite's LIKE would ignore it).
    assert await matching("File.*") == ["File.created"]
    assert await matching("FILE.CREATED") == []
    assert await matching("nothing.*") == []


async def test_like_and_glob_characters_in_a_type_pattern_match_only_themselves(
    store: Store,
) -> None:
    types = ["a%b", "axb", "a_b", "a\\b", "a[b]", "a?b", "ab", "a%%b"]
    await stored(store, *(event(n, t) for n, t in enumerate(types)))

    async def matching(pattern: str) -> list[str]:
        found = await store.list_events(limit=100, type_pattern=pattern)
        return sorted(s.event.type for s in found)

    assert await matching("a%*") == ["a%%b", "a%b"]
    assert await matching("a_*") == ["a_b"]
    assert await matching("a\\*") == ["a\\b"]
    assert await matching("*\\b") == ["a\\b"]
    assert await matching("a[*") == ["a[b]"]
    assert await matching("*b]") == ["a[b]"]
    assert await matching("a?*") == ["a?b"]
    assert await matching("a*b") == sorted(t for t in types if t != "a[b]")
    assert await matching("a%b") == ["a%b"]
    assert await matching("a_b") == ["a_b"]
    assert await matching("a?b") == ["a?b"]
    assert await matching("a[b]") == ["a[b]"]


async def test_the_source_filter_is_an_exact_source(store: Store) -> None:
    await stored(
        store,
        event(1, source="shop"),
        event(2, source="shop/eu"),
        event(3, source="Shop"),
        event(4, source="shop"),
        event(5, "order.paid", source="shop"),
        event(6, source="sho%"),
    )

    assert ids(await store.list_events(limit=10, source="shop")) == ["e5", "e4", "e1"]
    assert ids(await store.list_events(limit=10, source="sho%")) == ["e6"]
    assert ids(await store.list_events(limit=10, source="sho*")) == []
    both = await store.list_events(limit=10, source="shop", type_pattern="order.created")
    assert ids(both) == ["e4", "e1"]
    [first] = await store.list_events(limit=1, source="shop", type_pattern="order.*")
    assert first.event.id == "e5"
    rest = await store.list_events(
        limit=10, source="shop", type_pattern="order.*", before=first.seq
    )
    assert ids(rest) == ["e4", "e1"]


async def test_excluded_prefixes_are_skipped_and_pages_still_fill(store: Store) -> None:
    events = []
    for n in range(30):
        kind = ("reactor.task.succeeded", "reactor.run.failed", "order.created")[n % 3]
        events.append(event(n, kind))
    events.append(event(30, "reactor.taskforce"))
    events.append(event(31, "x_y"))
    events.append(event(32, "xzy"))
    await stored(store, *events)
    internal = ("reactor.task.", "reactor.run.")

    pages: list[list[StoredEvent]] = []
    before: int | None = None
    while page := await store.list_events(limit=4, before=before, exclude_prefixes=internal):
        pages.append(page)
        before = page[-1].seq
    walked = [s.event.type for page in pages for s in page]
    assert [len(p) for p in pages] == [4, 4, 4, 1]
    assert walked == ["xzy", "x_y", "reactor.taskforce", *["order.created"] * 10]

    # A prefix is compared as text: ``_`` and ``%`` in it are no wildcards.
    no_x_ = await store.list_events(limit=3, exclude_prefixes=("x_",))
    assert [s.event.type for s in no_x_] == ["xzy", "reactor.taskforce", "order.created"]
    assert len(await store.list_events(limit=100, exclude_prefixes=())) == 33
    assert await store.list_events(limit=100, exclude_prefixes=("",)) == []
    tasks = await store.list_events(
        limit=100, type_pattern="reactor.*", exclude_prefixes=("reactor.run.",)
    )
    assert {s.event.type for s in tasks} == {"reactor.task.succeeded", "reactor.taskforce"}


async def test_logs_of_one_task_are_paged_by_seq(store: Store) -> None:
    lines = [
        LogLine("run1", "extract" if i % 3 else "load", 1, "stdout", at(i), f"line {i}")
        for i in range(30)
    ]
    await store.append_logs(lines[:12])
    await store.append_logs([LogLine("run2", "extract", 1, "stderr", at(0), "elsewhere")])
    await store.append_logs(lines[12:])

    pages: list[list[LogLine]] = []
    after = 0
    while page := await store.logs("run1", after=after, limit=7, task_id="extract"):
        pages.append(page)
        after = page[-1].seq or 0
    assert [len(p) for p in pages] == [7, 7, 6]
    read = [line for page in pages for line in page]
    assert [replace(x, seq=None) for x in read] == [x for x in lines if x.task_id == "extract"]
    load = await store.logs("run1", after=0, limit=100, task_id="load")
    assert [x.line for x in load] == [f"line {i}" for i in range(0, 30, 3)]
    assert await store.logs("run1", after=0, limit=100, task_id="nope") == []
    [other] = await store.logs("run2", after=0, limit=10, task_id="extract")
    assert other.line == "elsewhere"
    # Without a task: every line of the run, as before.
    everything = await store.logs("run1", after=0, limit=100)
    assert [replace(x, seq=None) for x in everything] == lines
    assert await store.logs("run1", after=0, limit=100, task_id=None) == everything
