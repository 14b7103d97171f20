"""``reactor redrive`` against a real ``reactor serve``: a pipeline added later gets the event."""

from __future__ import annotations

import getpass
import json
import socket
import textwrap
from pathlib import Path

import httpx
import pytest
from helpers import wait_for

from reactor.client import Client

from .commands import run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

OTHER = """
name: other
triggers:
  - on: event
    type: invoice.paid
tasks:
  - id: show
    shell: "echo invoice"
"""

ORDERS = """
name: orders
triggers:
  - on: event
    type: order.created
tasks:
  - id: show
    shell: "echo order"
"""


async def test_redrive_an_event_then_a_type_from_the_command_line(
    serve, folder, tmp_path: Path
) -> None:
    pipelines = folder("pipelines", {"other.yaml": OTHER})
    served = serve(pipelines, "--store", f"sqlite:///{tmp_path / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    actor = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    client = Client(served.url)
    assert client.publish("order.created", {"n": 1}, source="shop", id="o-1").run_ids == ()

    (pipelines / "orders.yaml").write_text(textwrap.dedent(ORDERS).lstrip(), encoding="utf-8")
    await wait_for(
        lambda: "orders" in {p["name"] for p in httpx.get(f"{served.url}/api/pipelines").json()},
        timeout=30,
        message="the new pipeline to be loaded",
    )

    dry = run_reactor("redrive", "o-1", "--dry-run", "--url", served.url)
    assert dry.code == 0, dry.err
    assert "orders/event: fired" in dry.out
    assert "1 event(s) would be re-driven; would start 1 new run(s)" in dry.out
    assert client.runs(None, 10) == []

    first = run_reactor("redrive", "o-1", "--source", "shop", "--url", served.url)
    assert first.code == 0, first.err
    [run] = client.runs(None, 10)
    assert f"1 event(s) re-driven; fired: 1 new run(s) {run['id']}" in first.out
    assert client.wait_run(run["id"], timeout=30)["status"] == "succeeded"

    again = run_reactor(
        "redrive", "--type", "order.*", "--since", "1h", "--json", "--url", served.url
    )
    assert again.code == 0, again.err
    found = json.loads(again.out)
    assert (found["actor"], found["count"]) == (actor, 1)
    assert (found["new_run_ids"], found["existing_run_ids"]) == ([], [run["id"]])
    shown = run_reactor("redrive", "o-1", "--pipeline", "orders", "--url", served.url)
    assert f"fired: 0 new run(s); existing run(s) {run['id']}" in shown.out
    assert len(client.runs(None, 10)) == 1

    missing = run_reactor("redrive", "nope", "--url", served.url)
    assert missing.code == 1
    assert "404: no event 'nope'" in missing.err
    bad = run_reactor("redrive", "--type", "order.*", "--url", served.url)
    assert bad.code == 2
    assert "--type needs --since D or --from T (one of them)" in bad.err
