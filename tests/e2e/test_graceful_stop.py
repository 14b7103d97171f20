"""Stopping ``reactor serve``: tasks get the grace period, then are cancelled and killed."""

from __future__ import annotations

import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import wait_for

from .serve import Service

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stopping(service: Service) -> bool:
    return httpx.get(f"{service.url}/healthz", timeout=5).status_code == 503


async def start_task(
    tmp_path: Path, services: list[Service], command: str, *serve_args: str
) -> tuple[Service, str, Path]:
    """Serve a one-task pipeline running ``command``; start a run; wait until it runs."""
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "job.yaml").write_text(
        textwrap.dedent(f"""\
            name: job
            tasks:
              - id: work
                shell: "echo $$ > pid; {command}"
            """)
    )
    service = Service(folder, f"sqlite:///{tmp_path / 'reactor.db'}", None, *serve_args)
    services.append(service)
    await wait_for(service.healthy, timeout=30, message="serve to be healthy")
    response = httpx.post(f"{service.url}/api/pipelines/job/runs", json={}, timeout=5)
    assert response.status_code == 201, response.text
    pid_file = folder / "pid"
    await wait_for(
        lambda: pid_file.exists() and pid_file.read_text().strip() != "",
        timeout=30,
        message="the task to start",
    )
    return service, response.json()["id"], pid_file


async def final_status(tmp_path: Path, run_id: str) -> tuple[str, str | None]:
    from reactor.store import SqliteStore

    store = SqliteStore(tmp_path / "reactor.db")
    await store.open()
    try:
        run = await store.get_run(run_id)
        assert run is not None
        return run.status, run.reason
    finally:
        await store.close()


async def test_sigterm_lets_a_running_task_finish(tmp_path: Path, services: list[Service]) -> None:
    service, run_id, _ = await start_task(
        tmp_path, services, "while [ ! -f release ]; do sleep 0.05; done; echo finished"
    )
    service.process.send_signal(signal.SIGTERM)
    await wait_for(lambda: stopping(service), timeout=10, message="serve to say it is stopping")
    # The service now waits for the running task instead of cancelling it.
    (tmp_path / "pipelines" / "release").touch()
    service.process.wait(timeout=60)
    out, err = service.output()
    assert service.process.returncode == 0, err
    assert "Traceback" not in err
    assert f"run {run_id} job succeeded" in out
    assert await final_status(tmp_path, run_id) == ("succeeded", None)


async def test_grace_exceeded_cancels_and_kills_the_task(
    tmp_path: Path, services: list[Service]
) -> None:
    service, run_id, pid_file = await start_task(tmp_path, services, "sleep 300", "--grace", "0.5")
    shell = int(pid_file.read_text())
    _, err = service.stop(signal.SIGTERM)
    assert service.process.returncode == 0, err
    assert "Traceback" not in err
    assert gone(shell)
    status, reason = await final_status(tmp_path, run_id)
    assert status == "cancelled"
    assert reason == "the service stopped before the run finished"


async def test_second_interrupt_cancels_at_once(tmp_path: Path, services: list[Service]) -> None:
    service, run_id, pid_file = await start_task(tmp_path, services, "sleep 300", "--grace", "600")
    shell = int(pid_file.read_text())
    service.process.send_signal(signal.SIGINT)
    await wait_for(lambda: stopping(service), timeout=10, message="serve to say it is stopping")
    assert not gone(shell)  # the first interrupt waits for the task
    _, err = service.stop(signal.SIGINT)
    assert service.process.returncode == 0, err
    assert "cancelling running tasks now" in err
    assert gone(shell)
    status, reason = await final_status(tmp_path, run_id)
    assert status == "cancelled"
    assert reason == "cancelled at once by a second stop request"
