"""``reactor serve`` as a user runs it: publish, list, drop a file, stop with a signal."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import httpx
import pytest
from helpers import wait_for

from reactor.store import SqliteStore

from .commands import processes_of_run, run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

GREET = """
name: greet
params:
  name: {type: string}
triggers:
  - on: event
    id: asked
    type: greet.requested
    params: {name: "{{ event.data.name }}"}
  - on: file
    id: inbox
    path: ./inbox
    pattern: "*.txt"
    settle: 0.1s
    params: {name: "{{ event.data.name }}"}
tasks:
  - id: hello
    shell: "echo hello {{ params.name }}"
"""

SLOW = """
name: slow
triggers:
  - on: event
    type: slow.requested
tasks:
  - id: nap
    shell: "sleep 300 & echo $! >> pids; sleep 301 & echo $! >> pids; echo $$ >> pids; wait"
"""


def get_run(url: str, run_id: str) -> dict:
    response = httpx.get(f"{url}/api/runs/{run_id}", timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def runs_of(url: str, trigger: str) -> list[dict]:
    response = httpx.get(f"{url}/api/runs", params={"pipeline": "greet"}, timeout=5)
    return [r for r in response.json() if r["trigger"] == trigger]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_serve_publish_runs_and_a_dropped_file_then_sigterm(folder, serve) -> None:
    path = folder("pipelines", {"greet.yaml": GREET})
    (path / "inbox").mkdir()
    served = serve(path, "--store", f"sqlite:///{path.parent / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")

    published = run_reactor(
        "publish", "greet.requested", "--data", '{"name": "ann"}', "--url", served.url
    )
    assert published.code == 0, published.err
    event_line, run_line = published.out.splitlines()
    assert event_line.startswith("event ")
    assert run_line.startswith("run ")
    event_id, run_id = event_line.split()[1], run_line.split()[1]
    await wait_for(
        lambda: get_run(served.url, run_id)["status"] == "succeeded", message="the run to succeed"
    )
    run = get_run(served.url, run_id)
    assert (run["trigger"], run["params"], run["event_ids"]) == (
        "greet/asked",
        {"name": "ann"},
        [event_id],
    )
    assert run["tasks"][0]["output"] == "hello ann"

    again = run_reactor(
        "publish", "greet.requested", "--data", '{"name": "ann"}', "--id", event_id,
        "--url", served.url,
    )  # fmt: skip
    assert again.code == 0, again.err
    assert again.out.splitlines() == [f"event {event_id} (duplicate: no new run)", f"run {run_id}"]

    nobody = run_reactor("publish", "nobody.listens", "--url", served.url)
    assert nobody.code == 0
    assert nobody.out.splitlines()[1] == "no run started: no trigger fired for this event"

    refused = run_reactor("publish", "", "--url", served.url)
    assert refused.code == 1
    assert refused.err.strip() == "error: 400: 'type' is required and must be a non-empty string"

    listed = run_reactor("runs", "--json", "--url", served.url)
    assert listed.code == 0, listed.err
    [only] = json.loads(listed.out)
    assert (only["id"], only["status"], only["pipeline"]) == (run_id, "succeeded", "greet")

    table = run_reactor("runs", "--pipeline", "greet", "--url", served.url)
    assert table.code == 0, table.err
    assert run_id in table.out and "succeeded" in table.out

    (path / "inbox" / "bob.txt").write_text("hi\n")
    await wait_for(
        lambda: [r["status"] for r in runs_of(served.url, "greet/inbox")] == ["succeeded"],
        timeout=30,
        message="the dropped file's run",
    )
    [dropped] = runs_of(served.url, "greet/inbox")
    assert dropped["params"] == {"name": "bob.txt"}

    assert served.stop(signal.SIGTERM) == 0
    out, err = served.out(), served.err()
    assert "Traceback" not in err
    assert "SIGTERM: stopping" in err
    assert f"run {run_id} greet succeeded" in out
    assert f"run {dropped['id']} greet succeeded" in out
    assert out.rstrip().endswith("Reactor stopped.")
    assert served.session_is_empty()


async def test_sigint_stops_serve_and_kills_a_running_task_with_its_children(folder, serve) -> None:
    path = folder("pipelines", {"slow.yaml": SLOW})
    store = path.parent / "state.db"
    served = serve(path, "--store", f"sqlite:///{store}", "--grace", "0.5")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    published = run_reactor("publish", "slow.requested", "--url", served.url)
    assert published.code == 0, published.err
    run_id = published.out.splitlines()[1].split()[1]
    pids = path / "pids"
    await wait_for(
        lambda: pids.exists() and len(pids.read_text().split()) == 3,
        message="the task and its children to start",
    )
    assert len(processes_of_run(run_id)) == 3

    assert served.stop(signal.SIGINT) == 0
    err = served.err()
    assert "Traceback" not in err
    assert "SIGINT: stopping (running tasks get the grace period; again to cancel)" in err
    await wait_for(lambda: processes_of_run(run_id) == [], message="no process of the run left")
    assert served.session_is_empty()

    opened = SqliteStore(store)
    await opened.open()
    try:
        run = await opened.get_run(run_id)
    finally:
        await opened.close()
    assert run is not None
    assert (run.status, run.reason) == ("cancelled", "the service stopped before the run finished")


async def test_a_broken_folder_stops_serve_before_anything_starts(folder, serve) -> None:
    path = folder(
        "pipelines",
        {
            "greet.yaml": GREET,
            "broken.yaml": """
                name: broken
                tasks:
                  - id: a
                    needs: [b]
                    shell: "echo"
                """,
        },
    )
    served = serve(path)
    assert served.process.wait(timeout=60) == 1
    port = int(served.url.rsplit(":", 1)[1])
    assert not listening(port)
    assert served.err().splitlines() == [
        "pipelines/broken.yaml:4: tasks[0].needs[0]: unknown task 'b'",
        f"error: 1 problem(s) in {path}; nothing started",
    ]
    assert "Reactor serving" not in served.out()
    assert not (path / ".reactor").exists()  # not even the store was created


@pytest.mark.parametrize(("command", "code"), [("echo fine", 0), ("exit 3", 1)])
async def test_exit_after_one_run_exits_with_its_outcome(folder, serve, command, code) -> None:
    path = folder(
        "pipelines",
        {
            "once.yaml": f"""
                name: once
                triggers:
                  - on: file
                    path: ./inbox
                    settle: 0s
                tasks:
                  - id: only
                    shell: "{command}"
                """,
            "inbox/ready.txt": "here before the service\n",
        },
    )
    served = serve(path, "--exit-after", "1", http=False)
    assert served.process.wait(timeout=60) == code, served.err()
    out = served.out()
    assert "Traceback" not in served.err()
    final = "succeeded" if code == 0 else "failed"
    assert f" once {final}" in out
    assert out.rstrip().endswith("Reactor stopped.")
    assert served.session_is_empty()
    assert Path(path / ".reactor" / "reactor.db").exists()


async def test_serve_on_a_port_in_use_says_so(folder, serve) -> None:
    path = folder("pipelines", {"greet.yaml": GREET})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = serve(path, "--http", f"127.0.0.1:{port}", http=False)
        assert served.process.wait(timeout=60) == 1
    assert served.err().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert served.session_is_empty()


async def test_serve_a_folder_that_does_not_exist(tmp_path: Path, serve) -> None:
    missing = tmp_path / "nowhere"
    served = serve(missing, http=False)
    assert served.process.wait(timeout=60) == 1
    assert served.err().splitlines() == [
        f"{missing}: is not a folder",
        f"error: 1 problem(s) in {missing}; nothing started",
    ]
    assert not missing.exists()
