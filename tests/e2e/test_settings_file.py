"""``reactor serve`` reading ``reactor.yaml``, flags winning over it, and ``reactor sensors``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import wait_for

from .commands import free_port, run_reactor
from .conftest import StartServe

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

HOOK = """
name: hooked
triggers:
  - on: webhook
    name: small
    public: true
tasks:
  - id: echo
    shell: echo hooked
"""

INBOX = """
name: inbox
triggers:
  - on: file
    path: ./inbox
    pattern: "*.csv"
    settle: 0s
tasks:
  - id: show
    shell: "echo {{ event.data.name }}"
"""


async def healthy(served: Any) -> None:
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")


async def test_serve_takes_http_limits_and_a_relative_store_from_reactor_yaml(
    folder: Callable[..., Path], serve: StartServe
) -> None:
    port = free_port()
    pipelines = folder(
        "pipelines",
        {
            "hooked.yaml": HOOK,
            "reactor.yaml": f"""
            http: 127.0.0.1:{port}
            store: sqlite:///state/reactor.db
            limits:
              webhook_max_body: 100
            """,
        },
    )
    # No --http and no --store: both come from reactor.yaml.
    served = serve(pipelines, http=False)
    served.url = f"http://127.0.0.1:{port}"
    await healthy(served)
    assert f"API on http://127.0.0.1:{port}" in served.out()

    large = httpx.post(f"{served.url}/hooks/small", content=b"x" * 101, timeout=10)
    assert large.status_code == 413, large.text
    assert "max_body (100 bytes)" in large.text
    small = httpx.post(f"{served.url}/hooks/small", json={"ok": 1}, timeout=10)
    assert small.status_code in (200, 202), small.text

    assert served.stop() == 0
    # Relative to the pipelines folder, not to serve's working directory.
    database = pipelines / "state" / "reactor.db"
    assert database.exists()
    assert not (pipelines.parent / "state").exists()
    with sqlite3.connect(database) as conn:
        hooked = "SELECT count(*) FROM events WHERE type = 'webhook.small'"
        assert conn.execute(hooked).fetchone() == (1,)


async def test_flags_win_over_reactor_yaml(folder: Callable[..., Path], serve: StartServe) -> None:
    configured = free_port()
    pipelines = folder(
        "pipelines",
        {
            "hooked.yaml": HOOK,
            # An unset variable under store: is not read when --store is given.
            "reactor.yaml": f"""
            http: 127.0.0.1:{configured}
            store: env:REACTOR_TEST_NEVER_SET
            """,
        },
    )
    served = serve(pipelines, "--store", "sqlite:///flag.db")  # --http from the fixture
    await healthy(served)
    assert served.url.endswith(f":{configured}") is False
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{configured}/healthz", timeout=2)
    assert served.stop() == 0
    assert (pipelines.parent / "flag.db").exists()


async def test_an_unset_store_variable_is_refused(
    folder: Callable[..., Path], serve: StartServe
) -> None:
    pipelines = folder(
        "pipelines", {"hooked.yaml": HOOK, "reactor.yaml": "store: env:REACTOR_TEST_NEVER_SET\n"}
    )
    served = serve(pipelines)
    assert served.process.wait(timeout=60) == 1
    assert served.err().strip() == (
        f"error: {pipelines}/reactor.yaml: store: environment variable REACTOR_TEST_NEVER_SET"
        " is not set"
    )


BROKEN = """
connections:
  warehouse: localhost:5432
limits:
  webhook_max_body: lots
"""


async def test_a_broken_reactor_yaml_stops_serve_and_fails_validate(
    folder: Callable[..., Path], serve: StartServe
) -> None:
    pipelines = folder("pipelines", {"hooked.yaml": HOOK, "reactor.yaml": BROKEN})
    served = serve(pipelines)
    assert served.process.wait(timeout=60) == 1
    assert served.err().splitlines() == [
        f"{pipelines}/reactor.yaml:2: connections.warehouse: 'localhost:5432' is neither a URL"
        " (scheme://...) nor env:VARIABLE",
        f"{pipelines}/reactor.yaml:4: limits.webhook_max_body: 'lots' is not a size;"
        " write bytes (1048576) or 512KiB, 1MiB, 10MB",
        f"error: 2 problem(s) in {pipelines}/reactor.yaml",
    ]
    assert "serving" not in served.out()

    result = run_reactor("validate", "pipelines", cwd=pipelines.parent)
    assert result.code == 1
    assert result.err.splitlines() == [
        "pipelines/reactor.yaml:2: connections.warehouse: 'localhost:5432' is neither a URL"
        " (scheme://...) nor env:VARIABLE",
        "pipelines/reactor.yaml:4: limits.webhook_max_body: 'lots' is not a size;"
        " write bytes (1048576) or 512KiB, 1MiB, 10MB",
        "error: 2 problem(s) found",
    ]


async def test_reactor_sensors_shows_a_running_file_sensor(
    folder: Callable[..., Path], serve: StartServe
) -> None:
    pipelines = folder("pipelines", {"inbox.yaml": INBOX, "inbox/.keep": ""})
    served = serve(pipelines)
    await healthy(served)

    def sensors_json() -> list[dict[str, object]]:
        result = run_reactor("sensors", "--json", "--url", served.url)
        assert result.code == 0, result.err
        found: list[dict[str, object]] = json.loads(result.out)
        return found

    await wait_for(
        lambda: sensors_json()[0]["state"] == "watching", message="the file sensor to watch"
    )
    (pipelines / "inbox" / "a.csv").write_text("id\n1\n")
    await wait_for(lambda: sensors_json()[0]["events"] == 1, message="the file to be counted")
    (sensor,) = sensors_json()
    assert (sensor["trigger"], sensor["on"], sensor["state"]) == ("inbox/file", "file", "watching")

    table = run_reactor("sensors", "--url", served.url)
    assert table.code == 0, table.err
    header, row = [
        [cell.strip() for cell in line.strip("┃│ ").replace("┃", "│").split("│")]
        for line in table.out.splitlines()
        if "inbox/file" in line or "trigger" in line
    ]
    assert header[:6] == ["trigger", "on", "state", "events", "dupes", "dead"]
    assert row[:6] == ["inbox/file", "file", "watching", "1", "0", "0"]
    assert row[-1] == str((pipelines / "inbox").resolve())


async def test_reactor_sensors_without_a_service(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_reactor("sensors", "--url", url, cwd=tmp_path)
    assert result.code == 1
    assert result.err.startswith("error: ")
    assert url in result.err
