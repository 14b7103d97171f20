"""Reloading the pipelines folder while serving: new versions, broken versions, running runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers import wait_for

from reactor.errors import SpecErrorGroup

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def greeting(word: str, *, extra: str = "") -> str:
    return f"""
name: greet
params:
  gates: {{type: string, default: ""}}
tasks:
  - id: hold
    shell: >-
      while [ -n {{{{ params.gates }}}} ] && [ ! -f {{{{ params.gates }}}}/go ];
      do sleep 0.01; done
  - id: say
    needs: [hold]
    shell: "echo {word}"
{extra}"""


BROKEN = """
name: greet
tasks:
  - id: say
    shell: "echo broken"
    retries: {max: lots}
  - id: again
    shell: "echo"
    colour: red
"""
BROKEN_PROBLEMS = [
    "pipelines/greet.yaml:5: tasks[0].retries.max: Input should be a valid integer,"
    " unable to parse string as an integer",
    "pipelines/greet.yaml:8: tasks[1].colour: unknown field",
]


async def output_of(store, run_id: str, task_id: str = "say") -> object:
    return {t.task_id: t.output for t in await store.task_runs(run_id)}[task_id]


# These call reload() themselves (the file watcher is off, so it cannot race them);
# the last ones go through the watcher.


async def test_a_changed_file_applies_to_new_runs(write_pipeline, start_reactor, store) -> None:
    write_pipeline("greet.yaml", greeting("hello"))
    async with start_reactor() as reactor:
        before = await reactor.wait_run((await reactor.run_now("greet")).id)
        old_version = reactor.pipelines["greet"].version

        write_pipeline("greet.yaml", greeting("goodbye"))
        assert await reactor.reload() == []
        after = await reactor.wait_run((await reactor.run_now("greet")).id)

        write_pipeline("other.yaml", "name: other\ntasks:\n  - id: only\n    shell: 'echo other'\n")
        assert await reactor.reload() == []
        other = await reactor.wait_run((await reactor.run_now("other")).id)

    assert await output_of(store, before.id) == "hello"
    assert await output_of(store, after.id) == "goodbye"
    assert await output_of(store, other.id, "only") == "other"
    assert before.version == old_version != after.version
    # Every run records the text of the version it ran with.
    assert "echo hello" in await store.pipeline_version("greet", before.version)
    assert "echo goodbye" in await store.pipeline_version("greet", after.version)


async def test_a_broken_change_is_reported_with_file_and_line_and_the_old_version_stays(
    write_pipeline, start_reactor, store, caplog
) -> None:
    write_pipeline("greet.yaml", greeting("hello"))
    async with start_reactor() as reactor:
        version = reactor.pipelines["greet"].version
        write_pipeline("greet.yaml", BROKEN)
        with caplog.at_level(logging.ERROR, logger="reactor"):
            problems = await reactor.reload()
        assert reactor.pipelines["greet"].version == version
        run = await reactor.wait_run((await reactor.run_now("greet")).id)

    assert problems == BROKEN_PROBLEMS
    logged = [r.getMessage() for r in caplog.records if r.name == "reactor"]
    assert logged == [
        f"pipeline not reloaded: {problem} (the previous version stays in force)"
        for problem in BROKEN_PROBLEMS
    ]
    assert run.status == "succeeded"
    assert await output_of(store, run.id) == "hello"


async def test_a_running_run_finishes_on_the_version_it_started_with(
    write_pipeline, start_reactor, store, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    write_pipeline("greet.yaml", greeting("first"))
    async with start_reactor() as reactor:
        running = await reactor.run_now("greet", {"gates": str(gates)})
        await wait_for(
            lambda: reactor.health()["active_runs"] == 1, message="the first run to be active"
        )
        write_pipeline("greet.yaml", greeting("second"))
        assert await reactor.reload() == []
        (gates / "go").touch()
        newer = await reactor.wait_run((await reactor.run_now("greet")).id)
        older = await wait_run(store, running.id)

    assert await output_of(store, older.id) == "first"
    assert await output_of(store, newer.id) == "second"


async def test_a_removed_file_removes_its_pipeline(write_pipeline, start_reactor) -> None:
    path = write_pipeline("greet.yaml", greeting("hello"))
    write_pipeline("other.yaml", "name: other\ntasks:\n  - id: only\n    shell: 'echo'\n")
    async with start_reactor() as reactor:
        path.unlink()
        assert await reactor.reload() == []
        assert sorted(reactor.pipelines) == ["other"]


async def test_the_watcher_reloads_a_changed_file_by_itself(
    write_pipeline, start_reactor, store, caplog
) -> None:
    write_pipeline("greet.yaml", greeting("hello"))
    async with start_reactor(reload=True) as reactor:
        version = reactor.pipelines["greet"].version
        write_pipeline("greet.yaml", greeting("watched"))
        await wait_for(
            lambda: reactor.pipelines["greet"].version != version,
            timeout=30,
            message="the watcher to load the new version",
        )
        run = await reactor.wait_run((await reactor.run_now("greet")).id)

        changed = reactor.pipelines["greet"].version
        with caplog.at_level(logging.ERROR, logger="reactor"):
            write_pipeline("greet.yaml", BROKEN)
            await wait_for(
                lambda: any("pipeline not reloaded" in r.getMessage() for r in caplog.records),
                timeout=30,
                message="the watcher to report the broken file",
            )
        assert reactor.pipelines["greet"].version == changed

    assert await output_of(store, run.id) == "watched"


async def test_a_broken_folder_at_start_raises_every_problem_and_starts_nothing(
    write_pipeline, start_reactor, store
) -> None:
    write_pipeline("greet.yaml", BROKEN)
    write_pipeline("fine.yaml", "name: fine\ntasks:\n  - id: only\n    shell: 'echo'\n")
    with pytest.raises(SpecErrorGroup) as caught:
        async with start_reactor():
            pytest.fail("the service must not start with a broken pipeline")
    assert [str(p) for p in caught.value.problems] == BROKEN_PROBLEMS
    assert await store.list_runs(pipeline=None, limit=10, before=None) == []


async def test_a_changed_file_trigger_watches_with_its_new_settings(
    write_pipeline, pipelines_dir, start_reactor, store, recorder
) -> None:
    def inbox(pattern: str) -> str:
        return f"""
            name: inbox
            params:
              name: {{type: string}}
            triggers:
              - on: file
                path: ./inbox
                pattern: "{pattern}"
                settle: 0s
                params: {{name: "{{{{ event.data.name }}}}"}}
            tasks:
              - id: show
                shell: "echo {{{{ params.name }}}}"
            """

    folder = pipelines_dir / "inbox"
    folder.mkdir()
    write_pipeline("inbox.yaml", inbox("*.csv"))
    async with start_reactor() as reactor:
        write_pipeline("inbox.yaml", inbox("*.txt"))
        assert await reactor.reload() == []
        await wait_for(
            lambda: reactor.sensor_health()["inbox/file"].state == "watching",
            message="the new sensor to watch",
        )
        # Written first: by the time the .txt file ran, the .csv one was seen and ignored.
        (folder / "old.csv").write_text("x\n")
        (folder / "new.txt").write_text("x\n")
        [run] = await recorder.wait_finished(1)

    assert run.params == {"name": "new.txt"}
    assert len(await store.list_runs(pipeline=None, limit=10, before=None)) == 1


def chained(name: str, upstream: str | None = None) -> str:
    trigger = f"triggers:\n  - on: pipeline\n    pipeline: {upstream}\n" if upstream else ""
    return f"name: {name}\n{trigger}tasks:\n  - id: work\n    shell: echo {name}\n"


async def test_a_change_chaining_to_a_kept_previous_version_in_a_cycle_changes_nothing(
    write_pipeline, start_reactor
) -> None:
    write_pipeline("a.yaml", chained("a", "b"))
    write_pipeline("b.yaml", chained("b"))
    async with start_reactor() as reactor:
        before = dict(reactor.pipelines)
        # a.yaml breaks (its previous version, on b, stays) while b now triggers on a.
        write_pipeline("a.yaml", "name: a\ntasks: []\n")
        write_pipeline("b.yaml", chained("b", "a"))
        problems = await reactor.reload()
        assert reactor.pipelines == before

    assert problems == [
        "pipelines/a.yaml:2: tasks: List should have at least 1 item after validation, not 0",
        "pipelines/a.yaml:4: triggers[0].pipeline: chained pipelines form a cycle: b -> a -> b",
    ]
