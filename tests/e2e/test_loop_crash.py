"""A real ``reactor serve`` killed with SIGKILL in the middle of a ``for_each:`` loop.

After a restart the loop goes on where it was (docs/control-flow.md, "For each"):
finished iterations are not run again, the one cut off counts that attempt and
runs again, and the loop ends with every output in item order.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import wait_for

from reactor.store import open_store

from .serve import Service

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

PIPELINE = """\
name: loop
tasks:
  - id: each
    for_each: [0, 1, 2, 3, 4, 5]
    task:
      python: steps:work
      args: {item: "{{ item }}"}
      retries: {max: 1, delay: 0}
  - id: total
    needs: each
    python: steps:total
    args: {outputs: "{{ tasks.each.output }}"}
"""

# Item 3 hangs the first time (the service is killed while it runs); every call is counted.
STEPS = """\
import time
from pathlib import Path

HERE = Path(__file__).parent


def work(item):
    with open(HERE / "calls.log", "a") as log:
        log.write(f"{item}\\n")
    if item == 3 and not (HERE / "hung").exists():
        (HERE / "hung").touch()
        time.sleep(300)
    return item * 10


def total(outputs):
    return sum(outputs)
"""


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


def tasks_of(url: str, run_id: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{url}/api/runs/{run_id}", timeout=5).json()
    return {t["task_id"]: t for t in body["tasks"]}


async def test_a_loop_cut_off_by_a_crash_goes_on_without_rerunning_finished_iterations(
    store_url: str, tmp_path: Path, services: list[Service]
) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "loop.yaml").write_text(PIPELINE)
    (folder / "steps.py").write_text(STEPS)
    first = Service(folder, store_url)
    services.append(first)
    await wait_for(first.healthy, timeout=30, message="serve to be healthy")
    response = httpx.post(f"{first.url}/api/pipelines/loop/runs", json={}, timeout=5)
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]

    def three_done_and_fourth_hung() -> bool:
        if not (folder / "hung").exists():
            return False
        tasks = tasks_of(first.url, run_id)
        return all(tasks.get(f"each[{i}]", {}).get("status") == "succeeded" for i in range(3))

    await wait_for(
        three_done_and_fourth_hung,
        timeout=30,
        message="three iterations stored as done and the fourth running",
    )
    first.kill()
    assert first.process.returncode == -signal.SIGKILL

    second = Service(folder, store_url)
    services.append(second)
    await wait_for(second.healthy, timeout=30, message="the restarted serve to be healthy")

    def finished() -> bool:
        body = httpx.get(f"{second.url}/api/runs/{run_id}", timeout=5).json()
        return body["status"] in ("succeeded", "failed", "cancelled")

    await wait_for(finished, timeout=30, message="the run to finish after the restart")
    _, err = second.stop()
    assert second.process.returncode == 0, err

    store = open_store(store_url)
    await store.open()
    try:
        run = await store.get_run(run_id)
        tasks = {t.task_id: t for t in await store.task_runs(run_id)}
        attempts = await store.attempts(run_id)
    finally:
        await store.close()
    assert run is not None
    assert run.status == "succeeded", run.reason
    assert tasks["each"].output == [0, 10, 20, 30, 40, 50]
    assert tasks["total"].output == 150
    # Finished iterations ran once; the one cut off ran again (its attempt 1 counted).
    calls = (folder / "calls.log").read_text().split()
    assert sorted(calls) == ["0", "1", "2", "3", "3", "4", "5"]
    assert {i: tasks[f"each[{i}]"].attempts for i in range(6)} == {
        0: 1,
        1: 1,
        2: 1,
        3: 2,
        4: 1,
        5: 1,
    }
    assert all(tasks[f"each[{i}]"].status == "succeeded" for i in range(6))
    by_task = [(a.task_id, a.attempt, a.status) for a in attempts]
    assert ("each[3]", 1, "crashed") in by_task
    assert ("each[3]", 2, "succeeded") in by_task
    # The loop's own attempt cut off is crashed too; the loop went on in a second one.
    assert ("each", 1, "crashed") in by_task
    assert ("each", 2, "succeeded") in by_task
    assert sorted(a for a in by_task if a[0] in ("each[0]", "each[1]", "each[2]")) == [
        ("each[0]", 1, "succeeded"),
        ("each[1]", 1, "succeeded"),
        ("each[2]", 1, "succeeded"),
    ]
    assert not [a for a in attempts if a.status == "running"]
