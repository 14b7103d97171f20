"""``on: schedule`` in a real Reactor on both stores, driven by a fake clock (no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from helpers import Recorder, wait_for

from connectors.schedule import SCHEDULE_TICK, ScheduleTriggerSpec, tick_event
from reactor.clock import FakeClock
from reactor.errors import SpecErrorGroup
from reactor.service import Reactor
from reactor.store import RunRecord, Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

NIGHTLY = """
name: nightly
params:
  at: {type: string}
  window: {type: string}
triggers:
  - on: schedule
    cron: "0 6 * * *"
    timezone: Europe/Amsterdam
    params:
      at: "{{ logical.time }}"
      window: "{{ logical.start }}/{{ logical.end }}"
tasks:
  - id: show
    shell: "echo {{ logical.time }} {{ params.at }}"
"""

SOURCE = "reactor/sensors/nightly/schedule"


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


async def all_runs(store: Store) -> list[RunRecord]:
    runs = await store.list_runs(pipeline=None, limit=1000, before=None)
    return sorted(runs, key=lambda r: r.params.get("at", ""))


async def waiting_for(reactor: Reactor, clock: FakeClock, tick: str, key: str) -> None:
    """Wait until the sensor sleeps towards ``tick`` (it says so in its health)."""

    def asleep() -> bool:
        health = reactor.sensor_health().get(key)
        return health is not None and health.message == f"next tick {tick}"

    await wait_for(asleep, message=f"{key} to wait for {tick}")
    # The heartbeat and the sensor both sleep on the clock.
    await clock.wait_for_sleepers(2)


async def test_a_tick_starts_one_run_with_its_logical_time_and_a_restart_does_not_refire(
    write_pipeline, start_reactor, store: Store, recorder: Recorder
) -> None:
    write_pipeline("nightly.yaml", NIGHTLY)
    clock = FakeClock(at(2026, 3, 30, 3, 0))  # 05:00 in Amsterdam (CEST)
    async with start_reactor(clock=clock) as reactor:
        await waiting_for(reactor, clock, "2026-03-30T06:00:00+02:00", "nightly/schedule")
        clock.advance(3600)
        [run] = await recorder.wait_finished(1)

    assert run.status == "succeeded", run.reason
    assert run.trigger == "nightly/schedule"
    assert run.params == {
        "at": "2026-03-30T06:00:00+02:00",
        "window": "2026-03-29T06:00:00+02:00/2026-03-30T06:00:00+02:00",
    }
    [task] = await store.task_runs(run.id)
    assert task.output == "2026-03-30T06:00:00+02:00 2026-03-30T06:00:00+02:00"
    stored = await store.get_event(SOURCE, "2026-03-30T04:00:00+00:00")
    assert stored is not None
    assert stored.event.type == SCHEDULE_TICK

    # Back a minute later: the tick is done, the next one is tomorrow's.
    clock = FakeClock(at(2026, 3, 30, 4, 1))
    async with start_reactor(clock=clock) as reactor:
        await waiting_for(reactor, clock, "2026-03-31T06:00:00+02:00", "nightly/schedule")
        # The same tick emitted again (another process, a redelivery) is a duplicate.
        spec = reactor.pipelines["nightly"].triggers[0].spec
        assert isinstance(spec, ScheduleTriggerSpec)
        again = await reactor.emit(
            tick_event(spec, SOURCE, datetime.fromisoformat(run.params["at"]))
        )
        assert again.new is False
        clock.advance(86400)
        await recorder.wait_finished(2)

    runs = await all_runs(store)
    assert [r.params["at"] for r in runs] == [
        "2026-03-30T06:00:00+02:00",
        "2026-03-31T06:00:00+02:00",
    ]


HOURLY = """
name: hourly
params:
  at: {{type: string}}
triggers:
  - on: schedule
    every: 1h
    catchup: {policy}
    max_catchup: 3
    params: {{at: "{{{{ logical.time }}}}"}}
tasks:
  - id: show
    shell: "echo {{{{ params.at }}}}"
"""


@pytest.mark.parametrize(
    ("policy", "caught_up"),
    [
        ("none", []),
        ("latest", ["2026-01-01T10:00:00+00:00"]),
        (
            "all",
            ["2026-01-01T08:00:00+00:00", "2026-01-01T09:00:00+00:00", "2026-01-01T10:00:00+00:00"],
        ),
    ],
)
async def test_catchup_after_downtime_follows_the_policy(
    policy: str,
    caught_up: list[str],
    write_pipeline,
    start_reactor,
    store: Store,
    recorder: Recorder,
) -> None:
    write_pipeline("hourly.yaml", HOURLY.format(policy=policy))
    clock = FakeClock(at(2026, 1, 1, 0, 30))
    async with start_reactor(clock=clock) as reactor:
        # A first start runs nothing for the past, whatever the policy.
        await waiting_for(reactor, clock, "2026-01-01T01:00:00+00:00", "hourly/schedule")
        clock.advance(1800)
        await recorder.wait_finished(1)

    # Down from 01:00 to 10:30: nine ticks missed.
    clock = FakeClock(at(2026, 1, 1, 10, 30))
    async with start_reactor(clock=clock) as reactor:
        await waiting_for(reactor, clock, "2026-01-01T11:00:00+00:00", "hourly/schedule")
        await recorder.wait_finished(1 + len(caught_up))
        last = await store.last_event("reactor/sensors/hourly/schedule")

    assert last is not None
    assert last.event.id == (caught_up[-1] if caught_up else "2026-01-01T01:00:00+00:00")
    runs = await all_runs(store)
    assert [r.params["at"] for r in runs] == ["2026-01-01T01:00:00+00:00", *caught_up]
    assert all(r.status == "succeeded" for r in runs)


GATED = """
name: slow
params:
  at: {{type: string}}
concurrency: {{max_active_runs: 1, on_overlap: skip}}
triggers:
  - on: schedule
    every: 1m
    params: {{at: "{{{{ logical.time }}}}"}}
tasks:
  - id: work
    python: {module}:hold
    args: {{gates: "{gates}"}}
"""

GATE = """
from pathlib import Path

import anyio


async def hold(gates):
    # Runs until the test opens the gate.
    folder = Path(gates)
    (folder / "started").touch()
    with anyio.fail_after(20):
        while not (folder / "go").exists():
            await anyio.sleep(0.005)
"""


async def test_a_tick_while_a_run_is_active_is_skipped_with_its_reason(
    write_pipeline, write_module, start_reactor, store: Store, recorder: Recorder, tmp_path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    write_pipeline("slow.yaml", GATED.format(module=write_module(GATE), gates=gates))
    source = "reactor/sensors/slow/schedule"
    clock = FakeClock(at(2026, 1, 1, 0, 0, 30))
    async with start_reactor(clock=clock) as reactor:
        await waiting_for(reactor, clock, "2026-01-01T00:01:00+00:00", "slow/schedule")
        clock.advance(30)
        await wait_for(lambda: (gates / "started").exists(), message="the first run to start")
        await waiting_for(reactor, clock, "2026-01-01T00:02:00+00:00", "slow/schedule")
        clock.advance(60)

        async def evaluated() -> bool:
            stored = await store.get_event(source, "2026-01-01T00:02:00+00:00")
            return stored is not None and stored.outcome is not None

        await wait_for(evaluated, message="the second tick to be evaluated")
        (gates / "go").touch()
        [first] = await recorder.wait_finished(1)

    skipped = await store.get_event(source, "2026-01-01T00:02:00+00:00")
    assert skipped is not None and skipped.outcome is not None
    [decision] = skipped.outcome
    assert decision["fired"] is False
    assert decision["reason"] == "skipped: 1 runs active (on_overlap: skip)"
    assert "run_id" not in decision
    done = await wait_run(store, first.id)
    assert done.status == "succeeded"
    assert done.params == {"at": "2026-01-01T00:01:00+00:00"}
    assert len(await store.list_runs(pipeline="slow", limit=10, before=None)) == 1


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        (
            'cron: "0 25 * * *"',
            "pipelines/bad.yaml:4: triggers[0].cron: cron '0 25 * * *' is not valid: Bad hour",
        ),
        (
            'cron: "@daily"\n    timezone: Europe/Amsterdamm',
            "pipelines/bad.yaml:5: triggers[0].timezone: unknown timezone 'Europe/Amsterdamm';"
            " use an IANA name like UTC, Europe/Amsterdam or America/New_York",
        ),
        (
            'cron: "@daily"\n    every: 1h',
            "pipelines/bad.yaml:3: triggers[0]: a schedule needs exactly one of 'cron:' or"
            " 'every:'",
        ),
    ],
)
async def test_a_bad_schedule_stops_the_service_from_starting_with_file_and_line(
    trigger: str, message: str, write_pipeline, pipelines_dir, store: Store
) -> None:
    write_pipeline(
        "bad.yaml",
        f"name: bad\ntriggers:\n  - on: schedule\n    {trigger}\n"
        "tasks:\n  - id: a\n    shell: echo\n",
    )
    with pytest.raises(SpecErrorGroup) as caught:
        async with Reactor(pipelines_dir, store):
            pass
    [problem] = caught.value.problems
    shown = str(problem)
    assert shown.endswith(message.removeprefix("pipelines/")), shown


async def test_the_api_lists_the_next_fire_times_of_each_schedule(
    write_pipeline, start_reactor
) -> None:
    write_pipeline("nightly.yaml", NIGHTLY)
    clock = FakeClock(at(2026, 3, 27, 12, 0))
    async with start_reactor(clock=clock, http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            listed = await client.get("/api/pipelines/nightly/schedule", params={"count": 3})
            later = await client.get(
                "/api/pipelines/nightly/schedule",
                params={"count": 1, "after": "2026-10-25T00:00:00+02:00"},
            )
            unknown = await client.get("/api/pipelines/nope/schedule")
            naive = await client.get(
                "/api/pipelines/nightly/schedule", params={"after": "2026-10-25T00:00:00"}
            )
            too_many = await client.get("/api/pipelines/nightly/schedule?count=0")

    assert listed.status_code == 200
    assert listed.json() == {
        "pipeline": "nightly",
        "after": "2026-03-27T12:00:00+00:00",
        "triggers": [
            {
                "trigger": "nightly/schedule",
                "id": "schedule",
                "schedule": "cron '0 6 * * *' in Europe/Amsterdam",
                "timezone": "Europe/Amsterdam",
                "fire_times": [
                    {"time": "2026-03-28T06:00:00+01:00", "utc": "2026-03-28T05:00:00+00:00"},
                    {"time": "2026-03-29T06:00:00+02:00", "utc": "2026-03-29T04:00:00+00:00"},
                    {"time": "2026-03-30T06:00:00+02:00", "utc": "2026-03-30T04:00:00+00:00"},
                ],
            }
        ],
    }
    assert later.json()["triggers"][0]["fire_times"] == [
        {"time": "2026-10-25T06:00:00+01:00", "utc": "2026-10-25T05:00:00+00:00"}
    ]
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no pipeline 'nope'"}
    assert naive.status_code == 422
    assert naive.json() == {"error": "after: '2026-10-25T00:00:00' needs a UTC offset"}
    assert too_many.status_code == 422
    assert too_many.json()["error"].startswith("count: Input should be greater than or equal to 1")
