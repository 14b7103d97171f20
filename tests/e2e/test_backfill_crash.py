"""A backfill cut off by a SIGKILL of `reactor serve`: the next start ends it, one run a day."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import wait_for

from reactor.backfill import run_key_prefix
from reactor.client import Client
from reactor.store import open_store

from .commands import run_reactor
from .conftest import StartServe

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05", "2026-01-06"]

# Each attempt appends "start DAY" and, once the gate file exists, "end DAY" to one log:
# appends are ordered by causality (an end is written before the service sees the task
# exit and starts another run), so the log's order shows what ran at once, with no clock.
# The loop gives up on its own after about 30 s, so a failed test leaves nothing behind.
DAILY = """
name: days
tasks:
  - id: wait
    retries: {max: 1, delay: 0.05}
    shell: >-
      echo start {{ logical.time[:10] }} >> WORK/log;
      n=0;
      while [ ! -f WORK/gate ]; do
      n=$((n+1)); if [ $n -gt 600 ]; then exit 4; fi; sleep 0.05; done;
      echo end {{ logical.time[:10] }} >> WORK/log
"""


def log(work: Path) -> list[tuple[str, str]]:
    path = work / "log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(what, day) for what, day in (line.split() for line in lines)]


def most_at_once(entries: list[tuple[str, str]]) -> int:
    """The most runs alive together: a run lives from its first start to its last end
    (an attempt cut off by the crash wrote no end; the run's retry did)."""
    last_end = {day: i for i, (what, day) in enumerate(entries) if what == "end"}
    alive: set[str] = set()
    most = 0
    for i, (what, day) in enumerate(entries):
        if what == "start":
            alive.add(day)
            most = max(most, len(alive))
        elif last_end[day] == i:
            alive.discard(day)
    return most


async def test_a_backfill_killed_midway_resumes_and_runs_each_day_once(
    serve: StartServe, folder: Callable[..., Path], tmp_path: Path, store_url: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    pipelines = folder("pipelines", {"days.yaml": DAILY.replace("WORK", str(work))})
    first = serve(pipelines, "--store", store_url)
    await wait_for(first.healthy, timeout=30, message="reactor serve to be healthy")

    started = run_reactor(
        "backfill", "days", "--from", DAYS[0], "--to", "2026-01-07", "--step", "1d",
        "--concurrency", "2", "--no-wait", "--url", first.url,
    )  # fmt: skip
    assert started.code == 0, started.err
    found = re.fullmatch(
        r"backfill (\w+) of days: 6 run\(s\), 2 at a time \(running\)\n", started.out
    )
    assert found, started.out
    ident = found[1]
    client = Client(first.url)

    def two_attempts_recorded() -> bool:
        # Attempts are written behind the task's start: wait until both are in the store,
        # or the crash may cut off one that was never recorded (and its retry is attempt 1).
        shown = client.get_backfill(ident)
        running = [r["id"] for r in shown["runs"] if r["status"] == "running"]
        return (
            len(running) == 2
            and len(log(work)) == 2
            and all([t["attempts"] for t in client.get_run(r)["tasks"]] == [1] for r in running)
        )

    await wait_for(
        two_attempts_recorded, timeout=30, message="two runs running, each attempt recorded"
    )
    shown = client.get_backfill(ident)
    assert shown["counts"] == {
        "pending": 4, "queued": 0, "running": 2, "succeeded": 0, "failed": 0, "cancelled": 0,
    }  # fmt: skip
    assert sorted(log(work)) == [("start", DAYS[0]), ("start", DAYS[1])]

    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait()
    second = serve(pipelines, "--store", store_url)
    await wait_for(second.healthy, timeout=30, message="the restarted serve to be healthy")
    # Only now: the attempts the crash cut off were still waiting, and recovery killed them.
    (work / "gate").touch()
    client = Client(second.url)
    await wait_for(
        lambda: client.get_backfill(ident)["status"] != "running",
        timeout=30,
        message="the resumed backfill to end",
    )

    shown = client.get_backfill(ident)
    assert (shown["status"], shown["reason"], shown["total"]) == ("succeeded", None, 6), shown
    assert shown["counts"] == {
        "pending": 0, "queued": 0, "running": 0, "succeeded": 6, "failed": 0, "cancelled": 0,
    }  # fmt: skip
    assert len(shown["runs"]) == 6
    assert {r["status"] for r in shown["runs"]} == {"succeeded"}
    attempts: dict[str, int] = {}
    for run in shown["runs"]:
        [task] = client.get_run(run["id"])["tasks"]
        assert task["status"] == "succeeded", task
        attempts[run["id"]] = task["attempts"]
    # The two attempts the crash cut off count; their runs' retries finished them.
    assert sorted(attempts.values()) == [1, 1, 1, 1, 2, 2]
    entries = log(work)
    assert sorted(day for what, day in entries if what == "end") == DAYS
    assert sorted(day for what, day in entries if what == "start") == sorted([*DAYS, *DAYS[:2]])
    assert most_at_once(entries) == 2, entries
    assert len(client.runs("days")) == 6

    assert second.stop() == 0, second.err()
    store = open_store(store_url)
    await store.open()
    try:
        runs = await store.list_runs(pipeline="days", limit=100, before=None)
    finally:
        await store.close()
    prefix = run_key_prefix("days", ident)
    assert sorted(r.run_key for r in runs) == [f"{prefix}{day}T00:00:00+00:00" for day in DAYS]
