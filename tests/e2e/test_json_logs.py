"""``--log-format json`` / ``REACTOR_LOG_FORMAT=json`` as a user runs them: every line a JSON
object with the run, task and event ids, nothing else on the terminal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers import wait_for

from .commands import ENV, REACTOR, run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

GREET = """
name: greet
triggers:
  - id: asked
    on: event
    type: greet.requested
tasks:
  - id: hello
    shell: "echo hello"
  - id: bye
    needs: [hello]
    shell: "echo bye"
"""

BROKEN = """
name: broken
triggers:
  - id: asked
    on: event
    type: broken.requested
tasks:
  - id: fails
    shell: "echo no luck >&2; exit 3"
"""


def parsed(text: str) -> list[dict]:
    """Every line of ``text`` as JSON (a line that is not JSON fails the test, named)."""
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return found


def finished(url: str, run_id: str) -> bool:
    answer = httpx.get(f"{url}/api/runs/{run_id}", timeout=5)
    return answer.status_code == 200 and answer.json()["status"] in ("succeeded", "failed")


async def test_serve_logs_one_json_object_per_line_with_the_ids(folder, serve) -> None:
    path = folder("pipelines", {"greet.yaml": GREET, "broken.yaml": BROKEN})
    served = serve(path, "--store", f"sqlite:///{path.parent / 'state.db'}", "--log-format", "json")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    run_ids = {}
    for kind in ("greet", "broken"):
        answer = httpx.post(
            f"{served.url}/api/events", json={"type": f"{kind}.requested", "id": kind}, timeout=10
        )
        assert answer.status_code == 202, answer.text
        [run_ids[kind]] = answer.json()["run_ids"]
    for run_id in run_ids.values():
        await wait_for(lambda r=run_id: finished(served.url, r), timeout=30, message="the runs")
    assert served.stop() == 0

    assert served.out() == ""
    lines = parsed(served.err())
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    messages = [line["message"] for line in lines]
    assert messages[0].startswith(f"Reactor serving {path} (pipelines: broken, greet); UI and API")
    assert "SIGTERM: stopping (running tasks get the grace period; again to cancel)" in messages
    assert messages[-1] == "Reactor stopped."

    runs = [line for line in lines if line["logger"] == "reactor.runs"]
    assert all("run_id" in line for line in runs)
    greet = [line for line in runs if line["run_id"] == run_ids["greet"]]
    assert [(line.get("task_id"), line["status"]) for line in greet] == [
        (None, "queued"),
        (None, "running"),
        ("hello", "running"),
        ("hello", "succeeded"),
        ("bye", "running"),
        ("bye", "succeeded"),
        (None, "succeeded"),
    ]
    # Once it runs, a run's lines name the event that started it.
    assert all(line["event_id"] == "greet" for line in greet[1:])
    assert all(line["pipeline"] == "greet" for line in greet)
    broken = [line for line in runs if line["run_id"] == run_ids["broken"]]
    assert broken[-1]["status"] == "failed"
    assert broken[-1]["message"].endswith("broken failed (task fails failed)")
    [failed_task] = [
        line for line in broken if line.get("status") == "failed" and "task_id" in line
    ]
    assert failed_task["task_id"] == "fails"
    assert failed_task["attempt"] == 1


def test_run_takes_the_format_from_reactor_log_format(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN.lstrip(), encoding="utf-8")
    done = subprocess.run(
        [REACTOR, "run", "broken", "--dir", str(tmp_path)],
        env={**ENV, "REACTOR_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    lines = parsed(done.stderr)
    assert [line["status"] for line in lines if "task_id" not in line] == [
        "queued",
        "running",
        "failed",
    ]
    assert len({line["run_id"] for line in lines}) == 1


def test_an_unknown_log_format_is_refused() -> None:
    done = run_reactor("run", "anything", "--log-format", "xml")

    assert done.code == 2
    assert "'xml' is not one of 'text', 'json'" in done.err


def test_text_stays_the_default(tmp_path: Path) -> None:
    (tmp_path / "greet.yaml").write_text(GREET.lstrip(), encoding="utf-8")
    env = {k: v for k, v in ENV.items() if k != "REACTOR_LOG_FORMAT"}
    done = subprocess.run(
        [REACTOR, "run", "greet", "--dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("greet succeeded")
    assert not done.stdout.lstrip().startswith("{")
