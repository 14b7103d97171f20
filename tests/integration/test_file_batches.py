"""File batches on real folders: marker, manifest, count and quiet rules, once across restarts."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import Recorder, wait_for

from reactor.clock import FakeClock
from reactor.service import Reactor
from reactor.store import RunRecord, Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PIPELINE = """
name: batches
params:
  folder: {{type: string}}
  names: {{type: list}}
triggers:
  - on: file
    path: ./landing
    pattern: "*.csv"
    settle: {settle}
    rescan: 1h
{extra}    params:
      folder: "{{{{ event.data.path }}}}"
      names: "{{{{ event.data.files | map(attribute='name') | list }}}}"
tasks:
  - id: show
    shell: "echo {{{{ params.names | length }}}} files in {{{{ params.folder }}}}"
"""


@pytest.fixture
def landing(pipelines_dir: Path) -> Path:
    folder = pipelines_dir / "landing"
    folder.mkdir()
    return folder.resolve()


@pytest.fixture
def write_batches(write_pipeline):
    def write(extra: str, *, settle: str = "0s") -> None:
        lines = "".join(f"    {line}\n" for line in extra.strip().splitlines())
        write_pipeline("batches.yaml", PIPELINE.format(settle=settle, extra=lines))

    return write


async def watching(reactor: Reactor, key: str = "batches/file") -> None:
    await wait_for(
        lambda: key in reactor.sensor_health() and reactor.sensor_health()[key].state == "watching",
        message=f"sensor {key} to watch",
    )


async def all_runs(store: Store) -> list[RunRecord]:
    return await store.list_runs(pipeline=None, limit=1000, before=None)


def write_files(folder: Path, *names: str, content: str = "id\n1\n") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(content)


async def test_a_marker_completes_a_folder_and_one_event_carries_its_files(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {marker: _SUCCESS}")
    async with start_reactor() as reactor:
        await watching(reactor)
        day = landing / "day=2026-03-01"
        write_files(day, "part-1.csv", "part-0.csv", "notes.txt", ".part-2.csv")
        write_files(landing, "loose.csv")  # directly in path: part of no batch
        write_files(landing / ".staging", "part-0.csv", "_SUCCESS")  # hidden: still assembling
        # Another folder completes first: once it ran, day's files have long been seen.
        write_files(landing / "other", "a.csv", "_SUCCESS")
        [first] = await recorder.wait_finished(1)
        assert first.params["folder"] == str(landing / "other")
        assert len(await all_runs(store)) == 1

        (day / "_SUCCESS").write_text("")
        await wait_for(lambda: len(recorder.finished()) == 2, message="the day's run")

    runs = await all_runs(store)
    [run] = [r for r in runs if r.params["folder"] == str(day)]
    assert run.status == "succeeded", run.reason
    assert run.params["names"] == ["part-0.csv", "part-1.csv"]
    [task] = await store.task_runs(run.id)
    assert task.output == f"2 files in {day}"
    [event_id] = run.event_ids
    stored = await store.find_event(event_id)
    assert stored is not None
    assert stored.event.type == "reactor.file.batch"
    assert stored.event.source == "reactor/sensors/batches/file"
    assert stored.event.subject == "day=2026-03-01"
    data = stored.event.data
    assert data["path"] == str(day)
    assert data["name"] == "day=2026-03-01"
    assert [f["path"] for f in data["files"]] == [str(day / "part-0.csv"), str(day / "part-1.csv")]
    assert [f["size"] for f in data["files"]] == [5, 5]
    assert all(f["mtime"].endswith("+00:00") for f in data["files"])
    # No per-file events: the batch event is the only kind this trigger emitted.
    assert len(runs) == 2


async def test_a_batch_triggers_once_across_restarts_and_later_files_do_not_retrigger(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {marker: _SUCCESS}")
    write_files(landing / "b1", "a.csv", "_SUCCESS")  # complete before the service starts
    async with start_reactor():
        await recorder.wait_finished(1)

    write_files(landing / "b1", "late.csv")  # added while the service was down
    async with start_reactor() as reactor:
        await watching(reactor)
        write_files(landing / "b1", "later.csv")  # added while watched
        write_files(landing / "b2", "a.csv", "_SUCCESS")
        await wait_for(lambda: len(recorder.finished()) == 2, message="b2's run")

    runs = await all_runs(store)
    assert sorted(Path(r.params["folder"]).name for r in runs) == ["b1", "b2"]
    [b1] = [r for r in runs if r.params["folder"].endswith("b1")]
    assert b1.params["names"] == ["a.csv"]


async def test_with_on_change_retrigger_a_changed_batch_runs_again(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {count: 2}\non_change: retrigger")
    write_files(landing / "b1", "a.csv", "b.csv")
    async with start_reactor():
        await recorder.wait_finished(1)

    async with start_reactor() as reactor:
        await watching(reactor)
        # The same content again after a restart starts nothing; a rewrite does.
        write_files(landing / "b1", "b.csv", content="id\n1\n2\n")
        await wait_for(lambda: len(recorder.finished()) == 2, message="the rewritten batch's run")

    runs = sorted(await all_runs(store), key=lambda r: r.created_at)
    assert [r.params["names"] for r in runs] == [["a.csv", "b.csv"], ["a.csv", "b.csv"]]
    events = [await store.find_event(r.event_ids[0]) for r in runs]
    assert [[f["size"] for f in e.event.data["files"]] for e in events if e] == [[5, 5], [5, 7]]


async def test_count_completes_when_enough_matching_files_arrived(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {count: 3}\nrecursive: true")
    async with start_reactor() as reactor:
        await watching(reactor)
        write_files(landing / "b1", "a.csv", "skip.txt")
        write_files(landing / "b1" / "nested", "b.csv")
        write_files(landing / "b2", "1.csv", "2.csv", "3.csv")
        [first] = await recorder.wait_finished(1)
        assert first.params["folder"] == str(landing / "b2")

        write_files(landing / "b1", "c.csv")
        await wait_for(lambda: len(recorder.finished()) == 2, message="b1's run")

    [b1] = [r for r in await all_runs(store) if r.params["folder"].endswith("b1")]
    assert b1.params["names"] == ["a.csv", "c.csv", "nested/b.csv"]


async def test_a_manifest_completes_when_every_listed_file_is_there_with_its_size(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {manifest: manifest.json}")
    async with start_reactor() as reactor:
        await watching(reactor)
        b1 = landing / "b1"
        b1.mkdir()
        manifest = {"files": [{"name": "a.csv", "size": 5}, "b.json", "c.csv"]}
        (b1 / "manifest.json").write_text(json.dumps(manifest))
        write_files(b1, "a.csv", "b.json", "extra.csv")
        write_files(landing / "b2", "x.csv")
        (landing / "b2" / "manifest.json").write_text('["x.csv"]')
        await recorder.wait_finished(1)
        assert len(await all_runs(store)) == 1  # b2; b1 still misses c.csv

        write_files(b1, "c.csv")
        await wait_for(lambda: len(recorder.finished()) == 2, message="b1's run")

    [run] = [r for r in await all_runs(store) if r.params["folder"] == str(b1)]
    # The manifest's files, whatever the pattern; not the manifest, not extra.csv.
    assert run.params["names"] == ["a.csv", "b.json", "c.csv"]


async def test_a_broken_manifest_is_reported_in_health_and_a_fixed_one_completes(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {manifest: manifest.json}")
    b1 = landing / "b1"
    async with start_reactor() as reactor:
        await watching(reactor)
        write_files(b1, "a.csv")
        (b1 / "manifest.json").write_text('{"files": ["a.csv",')

        def message() -> str:
            return reactor.sensor_health()["batches/file"].message

        await wait_for(lambda: "not valid JSON" in message(), message="the broken manifest")
        health = reactor.sensor_health()["batches/file"]
        assert health.state == "failing"
        assert health.message == (
            f"manifest {b1 / 'manifest.json'}: not valid JSON (Expecting value at line 1 column 20)"
        )

        (b1 / "manifest.json").write_text("[]")
        await wait_for(lambda: "lists no files" in message(), message="the empty manifest")
        assert message() == f"manifest {b1 / 'manifest.json'}: the manifest lists no files"

        (b1 / "manifest.json").write_text('[{"name": "a.csv", "size": 99}]')
        # Not just "99": the temporary folder's path in the message may hold those digits.
        await wait_for(lambda: "the manifest says 99" in message(), message="the size mismatch")
        assert message() == (
            f"manifest {b1 / 'manifest.json'}: a.csv has 5 bytes, the manifest says 99"
        )
        assert await all_runs(store) == []

        (b1 / "manifest.json").write_text('["a.csv"]')
        [run] = await recorder.wait_finished(1)
        await watching(reactor)

    assert run.params["names"] == ["a.csv"]
    assert run.status == "succeeded", run.reason


def deadlines(clock: FakeClock) -> list[float]:
    # Which wake-ups the sensor asked for: how a test knows a change has been seen.
    return [entry[0] for entry in clock._sleepers]


async def test_quiet_completes_once_nothing_changed_for_that_long(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {quiet: 30s}")
    clock = FakeClock()
    start = clock.now()
    async with start_reactor(clock=clock) as reactor:
        await watching(reactor)
        write_files(landing / "b1", "a.csv")
        await wait_for(lambda: 30.0 in deadlines(clock), message="a.csv to be seen")
        clock.advance(20)
        write_files(landing / "b1", "b.csv")
        # The change at 20 s moves completion to 50 s.
        await wait_for(lambda: 50.0 in deadlines(clock), message="b.csv to be seen")
        clock.advance(29.5)
        assert 50.0 in deadlines(clock)
        assert await all_runs(store) == []
        clock.advance(0.5)
        [run] = await recorder.wait_finished(1)

    assert run.params["names"] == ["a.csv", "b.csv"]
    assert run.created_at - start >= timedelta(seconds=50)


async def test_files_of_a_batch_must_also_settle(
    write_batches, landing: Path, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_batches("complete: {marker: _SUCCESS}", settle="2s")
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        await watching(reactor)
        write_files(landing / "b1", "_SUCCESS")
        await wait_for(lambda: 2.0 in deadlines(clock), message="the marker to be seen")
        clock.advance(1)
        write_files(landing / "b1", "a.csv")
        # A file written after the marker, at 1 s: the batch waits until it settled at 3 s.
        await wait_for(lambda: 3.0 in deadlines(clock), message="a.csv to be seen")
        clock.advance(1.5)
        assert await all_runs(store) == []
        clock.advance(0.5)
        [run] = await recorder.wait_finished(1)

    assert run.params["names"] == ["a.csv"]
