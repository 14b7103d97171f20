"""The file sensor on real folders: matching, ignore, on_change across restarts, settling."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from pathlib import Path

import anyio
import pytest
from helpers import Recorder, wait_for

from reactor.clock import FakeClock
from reactor.service import Reactor
from reactor.store import RunRecord, Store

from .support import pump

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

PIPELINE = """
name: inbox
params:
  path: {{type: string}}
  name: {{type: string}}
  size: {{type: integer}}
triggers:
  - on: file
    path: {folder}
    pattern: {pattern}
    settle: {settle}
{extra}    params:
      path: "{{{{ event.data.path }}}}"
      name: "{{{{ event.data.name }}}}"
      size: "{{{{ event.data.size }}}}"
tasks:
  - id: show
    shell: "echo {{{{ params.path }}}}"
"""


def write_inbox_pipeline(
    write_pipeline,
    *,
    folder: str = "./inbox",
    settle: str = "0.2s",
    pattern: str = '"*.csv"',
    extra: str = "",
) -> None:
    lines = "".join(f"    {line}\n" for line in extra.splitlines())
    write_pipeline(
        "inbox.yaml",
        PIPELINE.format(folder=folder, settle=settle, pattern=pattern, extra=lines),
    )


async def watching(reactor: Reactor, key: str = "inbox/file") -> None:
    await wait_for(
        lambda: key in reactor.sensor_health() and reactor.sensor_health()[key].state == "watching",
        message=f"sensor {key} to watch",
    )


async def all_runs(store: Store) -> list[RunRecord]:
    return await store.list_runs(pipeline=None, limit=1000, before=None)


async def runs_for(store: Store, name: str) -> list[RunRecord]:
    return [r for r in await all_runs(store) if r.params.get("name") == name]


async def test_matching_file_starts_exactly_one_run_with_an_absolute_path(
    write_pipeline, pipelines_dir, start_reactor, store, recorder: Recorder
) -> None:
    write_inbox_pipeline(write_pipeline)
    inbox = pipelines_dir / "inbox"
    inbox.mkdir()
    async with start_reactor() as reactor:
        await watching(reactor)
        # Written first, so the sensor has seen them by the time the matching file arrives.
        (inbox / "notes.txt").write_text("not a csv\n")
        (inbox / ".hidden.csv").write_text("a,b\n")
        (inbox / "sub").mkdir()
        (inbox / "sub" / "nested.csv").write_text("a,b\n")
        content = "id,amount\n1,10\n"
        (inbox / "orders.csv").write_text(content)
        [run] = await recorder.wait_finished(1)
        health = reactor.sensor_health()["inbox/file"]

    assert run.status == "succeeded", run.reason
    assert run.trigger == "inbox/file"
    expected = (inbox / "orders.csv").resolve()
    assert run.params == {"path": str(expected), "name": "orders.csv", "size": len(content)}
    assert Path(run.params["path"]).is_absolute()
    [task] = await store.task_runs(run.id)
    assert task.output == str(expected)
    [event_id] = run.event_ids
    stored = await store.find_event(event_id)
    assert stored is not None
    assert stored.event.type == "reactor.file.arrived"
    assert stored.event.source == "reactor/sensors/inbox/file"
    assert stored.event.data["mtime"].endswith("+00:00")
    assert [r.id for r in await all_runs(store)] == [run.id]
    assert health.events == 1


async def test_several_patterns_ignore_globs_and_subfolders(
    write_pipeline, pipelines_dir, start_reactor, store, recorder: Recorder
) -> None:
    write_inbox_pipeline(
        write_pipeline,
        pattern='["*.csv", "*.json"]',
        extra='recursive: true\nignore: ["skip-*", archive, "drafts/old/*"]',
    )
    inbox = pipelines_dir / "inbox"
    for sub in ["archive", "sub", "drafts/old", ".cache"]:
        (inbox / sub).mkdir(parents=True)
    async with start_reactor() as reactor:
        await watching(reactor)
        for name in [
            "notes.txt",
            "skip-1.csv",
            "archive/a.csv",
            "drafts/old/b.csv",
            ".cache/c.csv",
            ".hidden.json",
            "orders.csv",
            "sub/nested.csv",
            "drafts/kept.json",
        ]:
            (inbox / name).write_text("x\n")
        await recorder.wait_finished(3)
        # Anything else would have run by the time a later file did.
        (inbox / "last.csv").write_text("x\n")
        await recorder.wait_finished(4)

    runs = await all_runs(store)
    assert sorted(r.params["path"] for r in runs) == sorted(
        str((inbox / name).resolve())
        for name in ["orders.csv", "sub/nested.csv", "drafts/kept.json", "last.csv"]
    )
    assert all(r.status == "succeeded" for r in runs)


async def test_files_present_at_start_are_picked_up_once_even_across_restarts(
    write_pipeline, pipelines_dir, start_reactor, store, recorder: Recorder
) -> None:
    write_inbox_pipeline(write_pipeline)
    inbox = pipelines_dir / "inbox"
    inbox.mkdir()
    (inbox / "early.csv").write_text("id\n1\n")
    async with start_reactor():
        await recorder.wait_finished(1)
    assert [r.params["name"] for r in await all_runs(store)] == ["early.csv"]

    # Rewritten while the service was down: with the default on_change: ignore,
    # the same path is no new arrival.
    with (inbox / "early.csv").open("a") as handle:
        handle.write("2\n")
    async with start_reactor() as reactor:
        await watching(reactor)
        # A new file is a marker: once it ran, the restarted sensor has long seen early.csv.
        (inbox / "marker.csv").write_text("id\n2\n")
        await wait_for(lambda: len(recorder.finished()) == 2, message="the marker's run")

        # Rewritten while watched: still not a new arrival.
        with (inbox / "early.csv").open("a") as handle:
            handle.write("3\n")
        (inbox / "marker2.csv").write_text("id\n3\n")
        await wait_for(lambda: len(recorder.finished()) == 3, message="the second marker's run")

    assert [r.params["size"] for r in await runs_for(store, "early.csv")] == [5]
    assert len(await runs_for(store, "marker.csv")) == 1
    assert all(r.status == "succeeded" for r in await all_runs(store))


async def test_with_on_change_retrigger_each_new_version_runs_once_across_restarts(
    write_pipeline, pipelines_dir, start_reactor, store, recorder: Recorder
) -> None:
    write_inbox_pipeline(write_pipeline, extra="on_change: retrigger")
    inbox = pipelines_dir / "inbox"
    inbox.mkdir()
    (inbox / "early.csv").write_text("id\n1\n")
    async with start_reactor():
        await recorder.wait_finished(1)

    async with start_reactor() as reactor:
        await watching(reactor)
        (inbox / "marker.csv").write_text("id\n2\n")
        await wait_for(lambda: len(recorder.finished()) == 2, message="the marker's run")
        assert len(await runs_for(store, "early.csv")) == 1

        # Same path, new size and mtime: that is a new file, and it runs again.
        with (inbox / "early.csv").open("a") as handle:
            handle.write("3\n")
        await wait_for(lambda: len(recorder.finished()) == 3, message="the modified file's run")

    early = await runs_for(store, "early.csv")
    assert [r.params["size"] for r in early] == [7, 5]
    assert len(await runs_for(store, "marker.csv")) == 1
    assert all(r.status == "succeeded" for r in await all_runs(store))


async def test_a_file_runs_only_after_its_size_stopped_changing_for_settle(
    write_pipeline, pipelines_dir, start_reactor, store
) -> None:
    write_inbox_pipeline(write_pipeline, settle="1s")
    inbox = pipelines_dir / "inbox"
    inbox.mkdir()
    clock = FakeClock()
    start = clock.now()
    async with start_reactor(clock=clock) as reactor:
        await watching(reactor)
        idle = clock.sleepers  # the heartbeat and the sensor's periodic rescan
        target = inbox / "growing.csv"
        target.write_text("id,amount\n")
        # The sensor now waits on the clock for the file to settle; nothing ran yet.
        await clock.wait_for_sleepers(idle + 1)
        assert await all_runs(store) == []

        clock.advance(0.5)
        with target.open("a") as handle:
            handle.write("1,10\n2,20\n")

        async def ran() -> bool:
            return len(await all_runs(store)) > 0

        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(pump, clock, step=0.25, idle_sleepers=idle))
            await wait_for(ran, message="the settled file's run")
            tg.cancel_scope.cancel()
        [run] = await all_runs(store)

    assert run.params["size"] == len("id,amount\n1,10\n2,20\n")
    # It arrived no earlier than settle (1 s) after the last change (at 0.5 s).
    assert run.created_at - start >= timedelta(seconds=1.5)


async def test_a_missing_folder_makes_the_sensor_fail_until_it_appears(
    write_pipeline, pipelines_dir, start_reactor, recorder: Recorder
) -> None:
    write_inbox_pipeline(write_pipeline, folder="./later", settle="0s")
    folder = (pipelines_dir / "later").resolve()
    clock = FakeClock()
    async with start_reactor(clock=clock) as reactor:
        await wait_for(
            lambda: reactor.sensor_health()["inbox/file"].state == "failing",
            message="the sensor to report the missing folder",
        )
        health = reactor.sensor_health()["inbox/file"]
        assert health.message == f"folder {folder} does not exist; waiting for it"
        assert reactor.health()["sensors"]["inbox/file"] == {
            "state": "failing",
            "message": f"folder {folder} does not exist; waiting for it",
            "events": 0,
        }

        folder.mkdir()
        clock.advance(1.0)
        await watching(reactor)
        (folder / "late.csv").write_text("id\n1\n")
        [run] = await recorder.wait_finished(1)

    assert run.status == "succeeded", run.reason
    assert run.params["path"] == str(folder / "late.csv")
