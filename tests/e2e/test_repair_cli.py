"""``reactor repair`` against a real ``reactor serve``, and a repair cut off by a crash."""

from __future__ import annotations

import getpass
import os
import signal
import socket
from pathlib import Path

import pytest
from helpers import wait_for

from reactor.client import Client

from .commands import run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

# load fails without the gate file; with the hold file it waits for the gate instead.
FLOW = """
name: flow
tasks:
  - id: extract
    shell: "echo extract >> {d}/calls"
  - id: load
    needs: extract
    retries: {{max: 1, delay: 0.05}}
    shell: >-
      echo load >> {d}/calls;
      test -f {d}/gate && exit 0;
      test -f {d}/hold || exit 3;
      while [ ! -f {d}/gate ]; do sleep 0.05; done
  - id: report
    needs: load
    shell: "echo report >> {d}/calls"
"""


def calls(work: Path) -> list[str]:
    path = work / "calls"
    return path.read_text().split() if path.exists() else []


async def test_repair_from_the_command_line_survives_a_crash(serve, folder, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    pipelines = folder("pipelines", {"flow.yaml": FLOW.format(d=work)})
    store = f"sqlite:///{tmp_path / 'state.db'}"
    first = serve(pipelines, "--store", store)
    await wait_for(first.healthy, timeout=30, message="reactor serve to be healthy")
    actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"

    client = Client(first.url)
    run_id = client.run("flow")["id"]
    run = client.wait_run(run_id, timeout=30)
    assert (run["status"], run["reason"]) == ("failed", "task load failed")
    assert calls(work) == ["extract", "load", "load"]

    unknown = run_reactor("repair", run_id, "--tasks", "load,nope", "--url", first.url)
    assert unknown.code == 1
    assert "422" in unknown.err
    assert "no task 'nope' in the pipeline (tasks: extract, load, report)" in unknown.err
    params = run_reactor("repair", run_id, "-p", "day=1", "--url", first.url)
    assert params.code == 1
    assert "unknown param 'day' (declared: none declared)" in params.err

    (work / "hold").touch()
    result = run_reactor("repair", run_id, "--url", first.url)
    assert result.code == 0, result.err
    assert f"run {run_id} flow: repair 1 running (rerunning load, report)" in result.out
    await wait_for(lambda: calls(work).count("load") == 3, message="the repaired load to run")
    again = run_reactor("repair", run_id, "--url", first.url)
    assert again.code == 1
    assert "409" in again.err and "only a finished run can be repaired" in again.err

    # The process dies in the middle of the repair; the next start finishes it.
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    (work / "gate").touch()
    second = serve(pipelines, "--store", store)
    await wait_for(second.healthy, timeout=30, message="the restarted serve to be healthy")
    run = Client(second.url).wait_run(run_id, timeout=30)
    assert (run["status"], run["reason"]) == (
        "succeeded",
        f"repair 1 by {actor}: tasks load, report",
    )
    tasks = {t["task_id"]: (t["status"], t["attempts"]) for t in run["tasks"]}
    # The crashed attempt 3 counts; the repair's own retry ran attempt 4.
    assert tasks == {
        "extract": ("succeeded", 1),
        "load": ("succeeded", 4),
        "report": ("succeeded", 1),
    }
    assert calls(work) == ["extract", "load", "load", "load", "load", "report"]
