"""A real ``reactor serve`` SIGKILLed in the middle of a 1,000-message Kafka burst, restarted:
every message started exactly one run (offsets are committed only after events are durable)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import wait_for
from kafka import TEST_SESSION, Broker, create_topic, produce, topic_name

from reactor.store import open_store

from .commands import ENV, REACTOR, Served, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MESSAGES = 1000

PIPELINE = """\
name: ingest
params:
  n: {{type: integer}}
triggers:
  - on: kafka
    connection: {url}
    topic: {topic}
    group: {topic}
    from: earliest
    fetch_batch: 100
    session_timeout: {session}
    params: {{n: "{{{{ event.data.n }}}}"}}
tasks:
  - id: note
    python: steps:note
    args: {{n: "{{{{ params.n }}}}"}}
    # An attempt the kill cut off counts as one; the run goes on with the next.
    retries: {{max: 2, delay: 0}}
"""

STEPS = """\
def note(n):
    return n
"""


@pytest.fixture
def services() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for served in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(served.process.pid, signal.SIGKILL)
        served.process.wait()


def start_serve(
    folder: Path, store_url: str, env: dict[str, str], services: list[Served]
) -> Served:
    """``reactor serve`` with its (plentiful) output going to files, never a full pipe."""
    n = len(services)
    port = free_port()
    stdout, stderr = folder.parent / f"serve-{n}.out", folder.parent / f"serve-{n}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [REACTOR, "serve", str(folder), "--store", store_url, "--http", f"127.0.0.1:{port}"],
            env={**ENV, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    served = Served(process, f"http://127.0.0.1:{port}", stdout, stderr)
    services.append(served)
    return served


def run_count(url: str) -> int:
    try:
        return len(httpx.get(f"{url}/api/runs", params={"limit": 5000}, timeout=30).json())
    except httpx.HTTPError:
        return 0


@pytest.mark.parametrize("how", ["after_persist", "anywhere"])
async def test_sigkill_mid_burst_then_restart(
    how: str, kafka_broker: Broker, tmp_path: Path, services: list[Served]
) -> None:
    topic = topic_name("crash")
    await create_topic(kafka_broker, topic, partitions=4)
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "ingest.yaml").write_text(
        PIPELINE.format(url=kafka_broker.url, topic=topic, session=TEST_SESSION)
    )
    (folder / "steps.py").write_text(STEPS)
    store_url = f"sqlite:///{tmp_path / 'state' / 'reactor.db'}"
    values = [f'{{"n": {n}}}'.encode() for n in range(MESSAGES)]
    await produce(kafka_broker, topic, values)

    # after_persist: killed once the third batch of events is durable and before its
    # offsets are committed. anywhere: killed from outside once some runs exist.
    env = {"REACTOR_FAILPOINTS": "ingest.after_persist=3"} if how == "after_persist" else {}
    first = start_serve(folder, store_url, env, services)
    if how == "anywhere":
        await wait_for(first.healthy, timeout=30, message="serve to be healthy")
        await wait_for(lambda: run_count(first.url) >= 150, timeout=60, message="runs to start")
        os.killpg(first.process.pid, signal.SIGKILL)
    await wait_for(
        lambda: first.process.poll() is not None, timeout=60, message="serve to be killed"
    )
    assert first.process.returncode == -signal.SIGKILL
    assert run_count(first.url) < MESSAGES  # cut off in the middle

    restarted = start_serve(folder, store_url, {}, services)
    await wait_for(restarted.healthy, timeout=30, message="the restarted serve to be healthy")

    def all_done() -> bool:
        try:
            runs = httpx.get(f"{restarted.url}/api/runs", params={"limit": 5000}, timeout=30).json()
        except httpx.HTTPError:
            return False
        return len(runs) >= MESSAGES and all(r["status"] == "succeeded" for r in runs)

    try:
        await wait_for(all_done, timeout=120, message="a finished run for every message")
    except AssertionError:
        runs = httpx.get(f"{restarted.url}/api/runs", params={"limit": 5000}, timeout=30).json()
        states = Counter(r["status"] for r in runs)
        raise AssertionError(f"runs: {states}; serve said: {restarted.err()[-3000:]}") from None
    assert restarted.stop() == 0, restarted.err()
    assert "Traceback" not in restarted.err()

    store = open_store(store_url)
    await store.open()
    try:
        runs = await store.list_runs(pipeline="ingest", limit=MESSAGES * 2, before=None)
        per_message = Counter(event_id for run in runs for event_id in run.event_ids)
        assert len(per_message) == MESSAGES
        assert set(per_message.values()) == {1}, per_message.most_common(3)
        assert sorted(run.params["n"] for run in runs) == list(range(MESSAGES))
    finally:
        await store.close()
