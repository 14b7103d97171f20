"""The real ``reactor serve`` killed with SIGKILL at each crash point, then restarted.

After the restart every event has exactly the runs its trigger calls for,
every run reaches a final state, no task succeeded twice and nothing is left
running. Crash points come from ``reactor.failpoints`` (``REACTOR_FAILPOINTS``).
"""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import wait_for

from reactor.failpoints import POINTS
from reactor.store import open_store

from .serve import Service

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

EVENTS = 3

PIPELINE = """\
name: crashy
params:
  n: {type: integer}
triggers:
  - on: event
    type: "job.*"
    params: {n: "{{ event.data.n }}"}
tasks:
  - id: first
    python: steps:record
    args: {name: first, n: "{{ params.n }}"}
    retries: {max: 2, delay: 0.05}
  - id: second
    needs: [first]
    shell: "echo second-{{ params.n }} >> executions.log"
    retries: {max: 2, delay: 0.05}
  - id: third
    needs: [second]
    python: steps:record
    args: {name: third, n: "{{ params.n }}"}
    retries: {max: 2, delay: 0.05}
"""

STEPS = """\
from pathlib import Path

def record(name, n):
    with open(Path(__file__).with_name("executions.log"), "a") as log:
        log.write(f"{name}-{n}\\n")
    return n
"""


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


def publish(url: str, n: int) -> None:
    """Publish job n, as a client that retries would: errors are for the caller to retry."""
    body = {
        "specversion": "1.0",
        "id": f"job-{n}",
        "source": "crash-test",
        "type": "job.new",
        "data": {"n": n},
    }
    httpx.post(f"{url}/api/events", json=body, timeout=5)


async def check_invariants(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    try:
        runs = await store.list_runs(pipeline=None, limit=100, before=None)
        by_event: dict[str, int] = {}
        for run in runs:
            for event_id in run.event_ids:
                by_event[event_id] = by_event.get(event_id, 0) + 1
            assert run.status == "succeeded", (run.id, run.status, run.reason)
            tasks = await store.task_runs(run.id)
            assert {t.task_id: t.status for t in tasks} == dict.fromkeys(
                ("first", "second", "third"), "succeeded"
            )
            attempts = await store.attempts(run.id)
            assert not [a for a in attempts if a.status == "running"], attempts
            for task in ("first", "second", "third"):
                won = [a for a in attempts if a.task_id == task and a.status == "succeeded"]
                assert len(won) == 1, (task, attempts)
        assert sorted(by_event.values()) == [1] * EVENTS, by_event
        assert not await store.unevaluated_events(10)
    finally:
        await store.close()


# Start-up commits three times (schema, pipeline version, process row): later counts land
# in the middle of event and task writes.
CASES = [(point, 2) for point in POINTS if point != "store.before_commit"] + [
    ("store.before_commit", 5),
    ("store.before_commit", 9),
]


@pytest.mark.parametrize(("point", "count"), CASES)
async def test_kill_at_each_point_then_restart(
    point: str, count: int, store_url: str, tmp_path: Path, services: list[Service]
) -> None:
    if point == "store.before_commit" and not store_url.startswith("sqlite"):
        pytest.skip("the PostgreSQL store commits single statements: nothing to interrupt")
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "crashy.yaml").write_text(PIPELINE)
    (folder / "steps.py").write_text(STEPS)
    crashing = Service(folder, store_url, {"REACTOR_FAILPOINTS": f"{point}={count}"})
    services.append(crashing)
    await wait_for(crashing.healthy, timeout=30, message="the first serve to be healthy")
    for n in range(EVENTS):
        try:
            publish(crashing.url, n)
        except httpx.HTTPError:
            break
    await wait_for(
        lambda: crashing.process.poll() is not None,
        timeout=30,
        message=f"serve to crash at {point}",
    )
    assert crashing.process.returncode == -signal.SIGKILL

    restarted = Service(folder, store_url, {})
    services.append(restarted)
    await wait_for(restarted.healthy, timeout=30, message="the restarted serve to be healthy")
    for n in range(EVENTS):  # the client retries what it may not have got an answer for
        publish(restarted.url, n)

    def all_final() -> bool:
        runs = httpx.get(f"{restarted.url}/api/runs", timeout=5).json()
        return len(runs) >= EVENTS and all(
            r["status"] in ("succeeded", "failed", "cancelled") for r in runs
        )

    await wait_for(all_final, timeout=30, message="every run to finish after the restart")
    _, err = restarted.stop()
    assert restarted.process.returncode == 0, err
    assert "Traceback" not in err
    await check_invariants(store_url)


async def test_orphaned_task_process_is_killed_on_recovery(
    tmp_path: Path, services: list[Service]
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "slow.yaml").write_text(
        textwrap.dedent("""\
        name: slow
        tasks:
          - id: sleepy
            retries: {max: 1, delay: 0}
            shell: "if [ ! -f started ]; then touch started; echo $$ > pid; sleep 300; fi"
        """)
    )
    db = tmp_path / "state" / "reactor.db"
    first = Service(folder, f"sqlite:///{db}")
    services.append(first)
    await wait_for(first.healthy, timeout=30, message="serve to be healthy")
    response = httpx.post(f"{first.url}/api/pipelines/slow/runs", json={}, timeout=5)
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    pid_file = folder / "pid"
    await wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "",
        timeout=30,
        message="the task's shell to start",
    )
    orphan = int(pid_file.read_text())
    os.kill(first.process.pid, signal.SIGKILL)  # only serve itself: its task is orphaned
    first.process.wait()
    os.kill(orphan, 0)  # still alive, an orphan now

    second = Service(folder, f"sqlite:///{db}")
    services.append(second)
    await wait_for(second.healthy, timeout=30, message="the restarted serve to be healthy")

    def gone() -> bool:
        try:
            os.kill(orphan, 0)
        except ProcessLookupError:
            return True
        # A zombie child of nobody's is reaped by init; until then it still counts as gone.
        stat = Path(f"/proc/{orphan}/stat")
        return stat.exists() and stat.read_text().split(") ")[1].startswith("Z")

    await wait_for(gone, timeout=30, message="the orphaned task process to be killed")

    def finished() -> bool:
        run = httpx.get(f"{second.url}/api/runs/{run_id}", timeout=5).json()
        return run["status"] == "succeeded"

    await wait_for(finished, timeout=30, message="the recovered run to succeed")
    run = httpx.get(f"{second.url}/api/runs/{run_id}", timeout=5).json()
    assert run["tasks"][0]["attempts"] == 2  # the crashed attempt counts


CHAINED = {
    "upstream.yaml": """\
name: upstream
triggers:
  - on: event
    type: job.new
tasks:
  - id: work
    shell: "echo 7"
""",
    "downstream.yaml": """\
name: downstream
params:
  n: {type: integer}
triggers:
  - on: pipeline
    pipeline: upstream
    params: {n: "{{ event.data.outputs.work }}"}
tasks:
  - id: note
    shell: "echo after-{{ params.n }} >> executions.log"
""",
}


async def test_a_run_end_lost_in_a_crash_starts_its_downstream_once_after_restart(
    store_url: str, tmp_path: Path, services: list[Service]
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name, text in CHAINED.items():
        (folder / name).write_text(text)
    crashing = Service(folder, store_url, {"REACTOR_FAILPOINTS": "run.after_finish=1"})
    services.append(crashing)
    await wait_for(crashing.healthy, timeout=30, message="the first serve to be healthy")
    publish(crashing.url, 1)
    await wait_for(
        lambda: crashing.process.poll() is not None,
        timeout=30,
        message="serve to crash after the upstream run ended",
    )

    for _ in range(2):  # the second start finds nothing left to do
        restarted = Service(folder, store_url, {})
        services.append(restarted)
        await wait_for(restarted.healthy, timeout=30, message="the restarted serve")

        def chained_done(url: str = restarted.url) -> bool:
            runs = httpx.get(f"{url}/api/runs", timeout=5).json()
            return [r["status"] for r in runs] == ["succeeded", "succeeded"]

        await wait_for(chained_done, timeout=30, message="the downstream run after the restart")
        _, err = restarted.stop()
        assert restarted.process.returncode == 0, err

    assert (folder / "executions.log").read_text() == "after-7\n"
    store = open_store(store_url)
    await store.open()
    try:
        [run] = await store.list_runs(pipeline="downstream", limit=10, before=None)
        assert run.params == {"n": 7}
        assert not await store.unevaluated_events(10)
        assert await store.runs_without_event("reactor/pipelines/", 10) == []
    finally:
        await store.close()
