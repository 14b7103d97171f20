"""Backfills on a real store: runs per logical time, a limit of their own, idempotent,
cancelled as a whole, resumed after a stop without doubling a run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from helpers import Recorder, wait_for

from reactor.backfill import BackfillError
from reactor.client import AsyncClient
from reactor.errors import AdmissionError, ClientError
from reactor.store import Store
from reactor.store.base import BackfillRow
from reactor.store.records import FINAL_RUN_STATES

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)
JAN_6 = datetime(2026, 1, 6, tzinfo=UTC)

# Each run waits for the gate file, so the test decides when runs may end.
DAILY = """
name: daily
params:
  day: {type: string}
  since: {type: string}
  size: {type: integer, default: 1}
triggers:
  - id: nightly
    on: schedule
    cron: "0 3 * * *"
    params:
      day: "{{ logical.time[:10] }}"
      since: "{{ logical.start }}"
tasks:
  - id: report
    shell: >-
      while [ ! -f GATE ]; do sleep 0.02; done;
      echo {{ params.day }} {{ params.size }} {{ logical.start }} {{ logical.end }}
"""


def daily(gate: Path) -> str:
    return DAILY.replace("GATE", str(gate))


async def ended(store: Store, backfill_id: str) -> BackfillRow:
    async def done() -> bool:
        found = await store.get_backfill(backfill_id)
        return found is not None and found.status != "running"

    await wait_for(done, timeout=30, message=f"backfill {backfill_id} to end")
    found = await store.get_backfill(backfill_id)
    assert found is not None
    return found


def most_running_at_once(recorder: Recorder) -> int:
    running: set[str] = set()
    most = 0
    for run_id, _, status in recorder.changes:
        if status == "running":
            running.add(run_id)
        elif status in FINAL_RUN_STATES:
            running.discard(run_id)
        most = max(most, len(running))
    return most


async def test_one_run_per_tick_at_most_concurrency_at_once_with_logical_params(
    write_pipeline, start_reactor, store: Store, recorder: Recorder, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    write_pipeline("daily.yaml", daily(gate))
    async with start_reactor(sensors=False) as reactor:
        backfill, new = await reactor.start_backfill(
            "daily", JAN_1, JAN_6, params={"size": "7"}, concurrency=2, actor="alice"
        )
        assert new
        assert (backfill.total, backfill.status, backfill.actor) == (5, "running", "alice")

        async def two_running() -> bool:
            runs = await reactor.backfill_runs(backfill)
            return [r.status for r in runs] == ["running", "running"]

        await wait_for(two_running, message="the first two runs running")
        # While they cannot end, the backfill starts no third.
        assert len(await reactor.backfill_runs(backfill)) == 2
        gate.touch()
        done = await ended(store, backfill.id)
        runs = await reactor.backfill_runs(backfill)
    assert (done.status, done.reason) == ("succeeded", None)
    assert most_running_at_once(recorder) == 2
    # In logical-time order, each with the params its scheduled run would have had.
    assert [r.params for r in runs] == [
        {"day": f"2026-01-0{d}", "since": f"2026-01-0{d - 1}T03:00:00+00:00", "size": 7}
        if d > 1
        else {"day": "2026-01-01", "since": "2025-12-31T03:00:00+00:00", "size": 7}
        for d in range(1, 6)
    ]
    assert [r.run_key.rsplit("/", 1)[1] for r in runs] == [
        f"2026-01-0{d}T03:00:00+00:00" for d in range(1, 6)
    ]
    outputs = [(await store.task_runs(r.id))[0].output for r in runs]
    assert outputs[1] == "2026-01-02 7 2026-01-01T03:00:00+00:00 2026-01-02T03:00:00+00:00"
    assert all(r.status == "succeeded" for r in runs)


async def test_the_same_backfill_again_answers_200_and_starts_nothing(
    write_pipeline, start_reactor, store: Store, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    write_pipeline("daily.yaml", daily(gate))
    body = {"pipeline": "daily", "from": "2026-01-01", "to": "2026-01-04", "concurrency": 3}
    async with start_reactor(sensors=False, http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            first = await http.post("/api/backfills", json=body, headers={"x-actor": "bob"})
            assert first.status_code == 201
            ident = first.json()["id"]
            await ended(store, ident)
            again = await http.post("/api/backfills", json=body)
            assert again.status_code == 200
            shown = again.json()
            assert shown["id"] == ident
            assert shown["actor"] == "bob"
            assert shown["counts"] == {
                "pending": 0,
                "queued": 0,
                "running": 0,
                "succeeded": 3,
                "failed": 0,
                "cancelled": 0,
            }
            listed = (await http.get("/api/backfills")).json()
            assert [(b["id"], b["status"], b["counts"]["succeeded"]) for b in listed] == [
                (ident, "succeeded", 3)
            ]
            assert "runs" not in listed[0]
            one = (await http.get(f"/api/backfills/{ident}")).json()
            assert [r["id"] for r in one["runs"]] == [r["id"] for r in shown["runs"]]
            missing = await http.get("/api/backfills/nope")
            assert (missing.status_code, missing.json()) == (404, {"error": "no backfill 'nope'"})
        # The same through the client, with the range written another way: still the same.
        async with AsyncClient(base) as client:
            same = await client.backfill(
                "daily",
                "2026-01-01T01:00:00+01:00",
                JAN_1.replace(day=4),
                concurrency=1,
            )
            assert same["id"] == ident
        assert len(await store.list_runs(pipeline="daily", limit=100, before=None)) == 3


async def test_cancelling_a_backfill_cancels_its_runs_and_starts_no_more(
    write_pipeline, start_reactor, store: Store, tmp_path: Path
) -> None:
    write_pipeline("daily.yaml", daily(tmp_path / "never"))
    async with start_reactor(sensors=False, http=("127.0.0.1", 0)) as reactor:
        backfill, _ = await reactor.start_backfill("daily", JAN_1, JAN_6, concurrency=2)

        async def two_running() -> bool:
            runs = await reactor.backfill_runs(backfill)
            return [r.status for r in runs] == ["running", "running"]

        await wait_for(two_running, message="two runs running")
        async with AsyncClient(f"http://127.0.0.1:{reactor.http_port}") as client:
            cancelled = await client.cancel_backfill(backfill.id, actor="carol")
            assert (cancelled["status"], cancelled["reason"]) == (
                "cancelled",
                "cancelled by carol",
            )
            assert cancelled["counts"]["cancelled"] == 2
            assert cancelled["counts"]["pending"] == 3
            with pytest.raises(ClientError) as caught:
                await client.cancel_backfill(backfill.id)
            assert caught.value.status == 409
            assert caught.value.message == (f"backfill {backfill.id} has ended already (cancelled)")
        runs = await reactor.backfill_runs(backfill)
        assert [(r.status, r.reason) for r in runs] == [("cancelled", "cancelled by carol")] * 2
        with pytest.raises(AdmissionError, match="no backfill 'nope'"):
            await reactor.cancel_backfill("nope", actor="carol")
    stored = await store.get_backfill(backfill.id)
    assert stored is not None
    assert stored.status == "cancelled"
    assert len(await store.list_runs(pipeline="daily", limit=100, before=None)) == 2


async def test_a_stopped_backfill_is_finished_by_the_next_start_without_doubling(
    write_pipeline, start_reactor, store: Store, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    write_pipeline("daily.yaml", daily(gate))
    async with start_reactor(sensors=False) as reactor:
        backfill, _ = await reactor.start_backfill("daily", JAN_1, JAN_6, concurrency=2)

        async def started() -> bool:
            runs = await reactor.backfill_runs(backfill)
            return [r.status for r in runs] == ["running", "running"]

        await wait_for(started, message="two runs running")
        # Their gate opens: the stop lets them finish, and the backfill is left running.
        gate.touch()
    stored = await store.get_backfill(backfill.id)
    assert stored is not None
    assert stored.status == "running"
    before = await store.list_runs(pipeline="daily", limit=100, before=None)
    assert 2 <= len(before) < 5
    async with start_reactor(sensors=False) as reactor:
        done = await ended(store, backfill.id)
        runs = await reactor.backfill_runs(backfill)
    assert done.status == "succeeded"
    assert len({r.run_key for r in runs}) == len(runs) == 5
    assert {r.id for r in before} <= {r.id for r in runs}
    assert all(r.status == "succeeded" for r in runs)


async def test_bad_backfills_are_refused_with_what_is_wrong(
    write_pipeline, start_reactor, tmp_path: Path
) -> None:
    write_pipeline("daily.yaml", daily(tmp_path / "gate"))
    write_pipeline(
        "plain.yaml",
        """
        name: plain
        tasks: [{id: a, shell: "true"}]
        """,
    )
    async with start_reactor(sensors=False, http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        cases = [
            (
                {"pipeline": "daily", "from": "2026-01-05", "to": "2026-01-01"},
                422,
                "from (2026-01-05T00:00:00+00:00) must be before to (2026-01-01T00:00:00+00:00)",
            ),
            (
                {"pipeline": "nope", "from": "2026-01-01", "to": "2026-01-02"},
                404,
                "unknown pipeline 'nope' (known: daily, plain)",
            ),
            (
                {"pipeline": "plain", "from": "2026-01-01", "to": "2026-01-02"},
                422,
                "plain has no on: schedule trigger, so its logical times are not known;"
                " give --step (step in the API), like --step 1d",
            ),
            (
                {"pipeline": "plain", "from": "2026-01-01", "to": "2026-02-01", "step": "1m"},
                422,
                "plain: 2026-01-01T00:00:00+00:00 to 2026-02-01T00:00:00+00:00 gives more than"
                " 10000 runs; backfill a shorter range (or a longer --step) at a time",
            ),
            (
                {"pipeline": "daily", "from": "2026-01-01", "to": "2026-01-02", "concurrency": 0},
                422,
                "concurrency must be between 1 and 1000, got 0",
            ),
            (
                {"pipeline": "daily", "from": "soon", "to": "2026-01-02"},
                422,
                "from 'soon' is not a date or time; write it like 2026-01-01 or"
                " 2026-01-01T06:00:00+01:00",
            ),
        ]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for body, status, message in cases:
                answer = await http.post("/api/backfills", json=body)
                assert (answer.status_code, answer.json()) == (status, {"error": message}), body
            assert (await http.get("/api/backfills")).json() == []
        with pytest.raises(BackfillError, match="params for logical time"):
            await reactor.start_backfill("daily", JAN_1, JAN_6, params={"size": "many"})
