"""``reactor cancel`` against a real ``reactor serve``: who asked is recorded."""

from __future__ import annotations

import getpass
import re
import socket
from pathlib import Path

import pytest
from helpers import processes_of, wait_for

from reactor.client import Client

from .commands import run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

SLOW = """
name: slow
tasks:
  - id: wait
    shell: "sleep 300"
  - id: after
    needs: wait
    run_if: all_done
    shell: echo after
"""


async def test_cancel_a_task_then_a_run_from_the_command_line(
    serve, folder, tmp_path: Path
) -> None:
    pipelines = folder("pipelines", {"slow.yaml": SLOW})
    served = serve(pipelines, "--store", f"sqlite:///{tmp_path / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"

    client = Client(served.url)
    started = client.run("slow")
    run_id = started["id"]
    await wait_for(lambda: bool(processes_of(run_id)), message="the task's process")

    result = run_reactor("cancel", run_id, "--task", "wait", "--url", served.url)
    assert result.code == 0, result.err
    assert f"cancelling task wait of run {run_id}" in result.out
    run = client.wait_run(run_id, timeout=30)
    assert (run["status"], run["reason"]) == ("cancelled", f"task wait cancelled by {actor}")
    tasks = {t["task_id"]: t["status"] for t in run["tasks"]}
    assert tasks == {"wait": "cancelled", "after": "succeeded"}
    assert not processes_of(run_id)

    again = run_reactor("cancel", run_id, "--url", served.url)
    assert again.code == 1
    assert re.search(rf"409: run {run_id} has ended already \(cancelled\)", again.err)

    second = client.run("slow")["id"]
    await wait_for(lambda: bool(processes_of(second)), message="the second run's process")
    result = run_reactor("cancel", second, "--url", served.url)
    assert result.code == 0, result.err
    assert f"run {second} slow cancelled (cancelled by {actor})" in result.out
