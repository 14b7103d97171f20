"""``reactor pause`` and ``reactor resume`` against a real ``reactor serve``."""

from __future__ import annotations

import getpass
import re
import socket
from pathlib import Path

import pytest
from helpers import wait_for

from reactor.client import Client

from .commands import run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

ORDERS = """
name: orders
params:
  n: {type: integer}
triggers:
  - on: event
    type: order.created
    params: {n: "{{ event.data.n }}"}
tasks:
  - id: show
    shell: "echo order {{ params.n }}"
"""


async def test_pause_then_resume_from_the_command_line(serve, folder, tmp_path: Path) -> None:
    pipelines = folder("pipelines", {"orders.yaml": ORDERS})
    served = serve(pipelines, "--store", f"sqlite:///{tmp_path / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    client = Client(served.url)

    result = run_reactor("pause", "orders", "--url", served.url)
    assert result.code == 0, result.err
    assert f"orders paused by {actor}" in result.out
    again = run_reactor("pause", "orders", "--url", served.url)
    assert again.code == 1
    assert "409: pipeline orders is paused already (paused by " in again.err
    missing = run_reactor("pause", "orders", "--trigger", "nope", "--url", served.url)
    assert missing.code == 1
    assert "404: pipeline orders has no trigger 'nope' (its triggers: event)" in missing.err

    published = client.publish("order.created", {"n": 7}, source="shop", id="o-7")
    assert published.run_ids == ()
    explained = run_reactor("explain", "o-7", "--url", served.url)
    assert explained.code == 0, explained.err
    assert f"paused by {actor} since" in explained.out

    unchosen = run_reactor("resume", "orders", "--url", served.url)
    assert unchosen.code == 1
    assert re.search(
        r"409: 1 event\(s\) were received while pipeline orders was paused .*"
        r"choose to replay them or to drop them \(reactor resume --replay or --drop",
        unchosen.err,
    )
    both = run_reactor("resume", "orders", "--replay", "--drop", "--url", served.url)
    assert both.code == 1
    assert "--replay and --drop exclude each other" in both.err

    result = run_reactor("resume", "orders", "--replay", "--url", served.url)
    assert result.code == 0, result.err
    match = re.search(r"orders resumed: 1 event\(s\) replayed, runs started: (\S+)", result.out)
    assert match is not None, result.out
    run = client.wait_run(match.group(1), timeout=30)
    assert (run["status"], run["params"]) == ("succeeded", {"n": 7})

    result = run_reactor("pause", "orders", "--trigger", "event", "--url", served.url)
    assert result.code == 0, result.err
    assert "orders/event paused by" in result.out
    result = run_reactor("resume", "orders", "--trigger", "event", "--url", served.url)
    assert result.code == 0, result.err
    assert "orders/event resumed: no event was received while paused" in result.out
    result = run_reactor("resume", "orders", "--drop", "--url", served.url)
    assert result.code == 1
    assert "409: pipeline orders is not paused" in result.err
