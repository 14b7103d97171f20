"""``reactor backfill`` against a real ``reactor serve``: progress, idempotence, cancel."""

from __future__ import annotations

import getpass
import json
import re
import socket
from pathlib import Path

import pytest
from helpers import wait_for

from reactor.client import Client

from .commands import run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

DAILY = """
name: daily
params:
  day: {type: string}
  size: {type: integer, default: 1}
triggers:
  - on: schedule
    cron: "0 3 * * *"
    params:
      day: "{{ logical.time[:10] }}"
tasks:
  - id: report
    shell: echo {{ params.day }} {{ params.size }}
"""

SLOW = """
name: slow
tasks:
  - id: wait
    shell: "sleep 300"
"""


async def test_backfill_follows_its_runs_and_is_idempotent(serve, folder, tmp_path: Path) -> None:
    pipelines = folder("pipelines", {"daily.yaml": DAILY, "slow.yaml": SLOW})
    served = serve(pipelines, "--store", f"sqlite:///{tmp_path / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    url = ("--url", served.url)
    asked = ("daily", "--from", "2026-01-01", "--to", "2026-01-04", "--concurrency", "2")

    result = run_reactor("backfill", *asked, "-p", "size=3", *url)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    found = re.fullmatch(r"backfill (\w+) of daily: 3 run\(s\), 2 at a time \(running\)", lines[0])
    assert found, result.out
    ident = found[1]
    # Not a terminal: a plain line whenever the counts change, the last one all done.
    assert all(line.startswith(f"backfill {ident}: ") for line in lines[1:-1]), result.out
    assert lines[-2] == f"backfill {ident}: 3/3 done (succeeded 3)"
    assert lines[-1] == f"backfill {ident} succeeded"

    client = Client(served.url)
    runs = [r for r in client.runs("daily") if r["status"] == "succeeded"]
    assert sorted(r["params"]["day"] for r in runs) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert {r["params"]["size"] for r in runs} == {3}

    again = run_reactor("backfill", *asked, "-p", "size=3", *url)
    assert again.code == 0, again.err
    assert again.out.splitlines()[0] == (
        f"backfill {ident} of daily: 3 run(s), 2 at a time (succeeded)"
    )
    assert len(client.runs("daily")) == 3

    listed = run_reactor("backfills", "--json", *url)
    assert listed.code == 0, listed.err
    [shown] = json.loads(listed.out)
    assert (shown["id"], shown["status"], shown["counts"]["succeeded"]) == (ident, "succeeded", 3)

    refused = run_reactor("backfill", "slow", "--from", "2026-01-01", "--to", "2026-01-02", *url)
    assert refused.code == 1
    assert "422: slow has no on: schedule trigger" in refused.err
    assert "give --step" in refused.err


async def test_backfill_cancel_stops_a_backfill_and_its_runs(serve, folder, tmp_path: Path) -> None:
    pipelines = folder("pipelines", {"slow.yaml": SLOW})
    served = serve(pipelines, "--store", f"sqlite:///{tmp_path / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    url = ("--url", served.url)
    actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"

    started = run_reactor(
        "backfill", "slow", "--from", "2026-01-01", "--to", "2026-01-08", "--step", "1d",
        "--concurrency", "3", "--no-wait", *url,
    )  # fmt: skip
    assert started.code == 0, started.err
    ident = re.findall(r"backfill (\w+) of slow: 7 run\(s\), 3 at a time", started.out)[0]
    client = Client(served.url)
    await wait_for(
        lambda: client.get_backfill(ident)["counts"]["running"] == 3,
        timeout=30,
        message="three runs running",
    )

    result = run_reactor("backfill-cancel", ident, *url)
    assert result.code == 0, result.err
    assert result.out.strip() == f"backfill {ident} cancelled (pending 4, cancelled 3)"
    shown = client.get_backfill(ident)
    assert (shown["status"], shown["reason"]) == ("cancelled", f"cancelled by {actor}")
    assert {r["status"] for r in shown["runs"]} == {"cancelled"}

    again = run_reactor("backfill-cancel", ident, *url)
    assert again.code == 1
    assert f"409: backfill {ident} has ended already (cancelled)" in again.err
