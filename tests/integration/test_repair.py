"""Repairing a finished run: its failed part runs again, the rest keeps its outputs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from reactor.client import AsyncClient
from reactor.errors import AdmissionError, ClientError
from reactor.repair import RepairError, UnknownTaskError
from reactor.specs import run_event_source
from reactor.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

STEPS = """
from pathlib import Path

FOLDER = Path({folder!r})


def _call(name):
    with (FOLDER / "calls").open("a") as calls:
        calls.write(name + "\\n")


def extract():
    _call("extract")
    return 21


def load(n):
    _call("load")
    if not (FOLDER / "gate").exists():
        raise RuntimeError("the gate file is missing")
    return n * 2


def report(label, loaded):
    _call("report")
    return f"{{label}}:{{loaded}}"


def side():
    _call("side")
    return "side"

"""

FLOW = """
name: flow
params:
  label: {{type: string, default: first}}
tasks:
  - id: extract
    python: {mod}:extract
  - id: load
    needs: extract
    python: {mod}:load
    args: {{n: "{{{{ tasks.extract.output }}}}"}}
  - id: report
    needs: load
    python: {mod}:report
    args: {{label: "{{{{ params.label }}}}", loaded: "{{{{ tasks.load.output }}}}"}}
  - id: side
    python: {mod}:side
"""


def calls(folder: Path) -> list[str]:
    path = folder / "calls"
    return path.read_text().split() if path.exists() else []


@pytest.fixture
def flow(write_pipeline, write_module, tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    mod = write_module(STEPS.format(folder=str(folder)))
    write_pipeline("flow.yaml", FLOW.format(mod=mod))
    return folder


async def failed_run(reactor, folder: Path) -> str:
    run = await reactor.run_now("flow")
    ended = await reactor.wait_run(run.id)
    assert (ended.status, ended.reason) == ("failed", "task load failed")
    assert sorted(calls(folder)) == ["extract", "load", "side"]
    return run.id


async def test_repair_reruns_the_failed_task_and_its_downstream_only(
    flow: Path, start_reactor, store: Store
) -> None:
    async with start_reactor() as reactor:
        run_id = await failed_run(reactor, flow)
        before = {t.task_id: t for t in await store.task_runs(run_id)}
        assert before["report"].status == "upstream_failed"
        (flow / "gate").touch()
        repaired, plan = await reactor.repair(run_id, actor="alice")
        assert plan.chosen == ("load", "report")
        assert plan.reset == ("load", "report")
        assert repaired.status == "running"
        ended = await reactor.wait_run(run_id)
    assert ended.status == "succeeded"
    assert ended.reason == "repair 1 by alice: tasks load, report"
    assert ended.ended_at is not None and ended.ended_at >= before["load"].ended_at
    # extract and side were not called again; load and report were.
    assert sorted(calls(flow)) == ["extract", "load", "load", "report", "side"]
    tasks = {t.task_id: t for t in await store.task_runs(run_id)}
    assert {t: r.status for t, r in tasks.items()} == dict.fromkeys(tasks, "succeeded")
    assert tasks["extract"].output == 21
    assert tasks["extract"].ended_at == before["extract"].ended_at
    assert tasks["load"].output == 42
    assert tasks["report"].output == "first:42"
    # Attempt numbers go on; the first failed attempt is still there.
    attempts = sorted((a.task_id, a.attempt, a.status) for a in await store.attempts(run_id))
    assert attempts == [
        ("extract", 1, "succeeded"),
        ("load", 1, "failed"),
        ("load", 2, "succeeded"),
        ("report", 1, "succeeded"),
        ("side", 1, "succeeded"),
    ]
    lines = [(x.task_id, x.attempt, x.line) for x in await store.logs(run_id, after=0, limit=500)]
    assert ("load", 2, "repair 1 by alice: tasks load, report (was failed)") in lines
    assert ("report", 1, "repair 1 by alice: tasks load, report (was upstream_failed)") in lines
    # Both ends are events: the first under the run id, the repair's under its own id.
    source = run_event_source("flow")
    first = await store.get_event(source, run_id)
    again = await store.get_event(source, f"{run_id}/repair-1")
    assert first is not None and first.event.type == "reactor.run.failed"
    assert again is not None and again.event.type == "reactor.run.succeeded"
    assert again.event.data["outputs"]["report"] == "first:42"


async def test_forced_tasks_changed_params_and_a_second_repair(
    flow: Path, start_reactor, store: Store
) -> None:
    (flow / "gate").touch()
    async with start_reactor() as reactor:
        run = await reactor.run_now("flow")
        assert (await reactor.wait_run(run.id)).status == "succeeded"
        _, plan = await reactor.repair(
            run.id, tasks=["load"], params={"label": "second"}, actor="bob"
        )
        assert plan.reset == ("load", "report")
        ended = await reactor.wait_run(run.id)
        assert (ended.status, ended.params) == ("succeeded", {"label": "second"})
        _, plan = await reactor.repair(run.id, tasks=["side"], actor="bob")
        assert plan.reset == ("side",)
        ended = await reactor.wait_run(run.id)
    assert ended.reason == "repair 2 by bob: tasks side"
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["report"].output == "second:42"
    assert (tasks["load"].attempts, tasks["report"].attempts, tasks["side"].attempts) == (2, 2, 2)
    assert tasks["extract"].attempts == 1
    assert sorted(calls(flow)) == sorted(["extract"] + ["load", "report", "side"] * 2)
    source = run_event_source("flow")
    assert await store.get_event(source, f"{run.id}/repair-2") is not None


async def test_repair_uses_the_runs_version_unless_latest(
    flow: Path, start_reactor, store: Store
) -> None:
    (flow / "gate").touch()
    async with start_reactor() as reactor:
        run = await reactor.run_now("flow")
        assert (await reactor.wait_run(run.id)).status == "succeeded"
        old_version = run.version
        pipeline = reactor.pipelines["flow"]
        changed = pipeline.path.read_text().replace("default: first", "default: newer")
        changed += "  - id: extra\n    needs: report\n    shell: echo extra\n"
        pipeline.path.write_text(changed)
        await reactor.reload()
        assert reactor.pipelines["flow"].version != old_version

        await reactor.repair(run.id, tasks=["report"], actor="carol")
        ended = await reactor.wait_run(run.id)
        assert ended.version == old_version
        names = {t.task_id for t in await store.task_runs(run.id)}
        assert "extra" not in names

        _, plan = await reactor.repair(run.id, tasks=["report"], latest=True, actor="carol")
        assert plan.reset == ("report", "extra")
        ended = await reactor.wait_run(run.id)
    assert ended.status == "succeeded"
    assert ended.version == reactor.pipelines["flow"].version
    tasks = {t.task_id: t for t in await store.task_runs(run.id)}
    assert tasks["extra"].status == "succeeded"
    # The run's params were checked and kept: the default of the run's own time stays.
    assert tasks["report"].output == "first:42"


async def test_refusals_name_what_is_wrong(flow: Path, start_reactor, store: Store) -> None:
    (flow / "gate").touch()
    async with start_reactor() as reactor:
        with pytest.raises(AdmissionError, match="no run 'nope'"):
            await reactor.repair("nope")
        run = await reactor.run_now("flow")
        await reactor.wait_run(run.id)
        with pytest.raises(RepairError, match="nothing to repair: every task succeeded"):
            await reactor.repair(run.id)
        with pytest.raises(
            UnknownTaskError,
            match=r"no task 'nope' in the pipeline \(tasks: extract, side, load, report\)",
        ):
            await reactor.repair(run.id, tasks=["nope"])
        with pytest.raises(RepairError, match="unknown param 'colour'"):
            await reactor.repair(run.id, tasks=["side"], params={"colour": "red"})
        # A run still running cannot be repaired.
        await reactor.repair(run.id, tasks=["side"])
        with pytest.raises(RepairError, match="only a finished run can be repaired"):
            await reactor.repair(run.id, tasks=["side"])
        await reactor.wait_run(run.id)


async def test_api_and_client(flow: Path, start_reactor, store: Store) -> None:
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        base = f"http://127.0.0.1:{reactor.http_port}"
        run_id = await failed_run(reactor, flow)
        (flow / "gate").touch()
        async with AsyncClient(base) as client:
            with pytest.raises(ClientError, match="no task 'x' in the pipeline"):
                await client.repair(run_id, tasks=["x"])
            answer = await client.repair(run_id, actor="dave")
            assert answer["repair"] == {
                "number": 1,
                "tasks": ["load", "report"],
                "rerun": ["load", "report"],
            }
            ended = await reactor.wait_run(run_id)
            assert ended.status == "succeeded"
            with pytest.raises(ClientError, match="nothing to repair"):
                await client.repair(run_id)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            missing = await http.post("/api/runs/nope/repair", json={})
            assert missing.status_code == 404
            assert missing.json()["error"] == "no run 'nope'"
            refused = await http.post(f"/api/runs/{run_id}/repair", json={})
            assert refused.status_code == 409
            bad = await http.post(f"/api/runs/{run_id}/repair", json={"tasks": "load"})
            assert (bad.status_code, bad.json()["error"]) == (
                422,
                "tasks: must be a list of task ids (strings)",
            )
            unknown = await http.post(f"/api/runs/{run_id}/repair", json={"colour": 1})
            assert unknown.status_code == 422
            assert "unknown field(s) colour" in unknown.json()["error"]
            forced = await http.post(
                f"/api/runs/{run_id}/repair", json={"tasks": ["side"]}, headers={"X-Actor": "eve"}
            )
            assert forced.status_code == 202
            assert forced.json()["reason"] == "repair 2 by eve: tasks side"
            await reactor.wait_run(run_id)


FLAKY = """
from pathlib import Path

CALLS = Path({path!r})


def flaky():
    with CALLS.open("a") as calls:
        calls.write("x\\n")
    count = len(CALLS.read_text().split())
    if count < 4:
        raise RuntimeError(f"call {{count}} fails")
    return count
"""


async def test_a_repaired_task_has_its_own_retries(
    write_pipeline, write_module, start_reactor, store: Store, tmp_path: Path
) -> None:
    mod = write_module(FLAKY.format(path=str(tmp_path / "flaky-calls")))
    write_pipeline(
        "flaky.yaml",
        f"""
        name: flaky
        tasks:
          - id: try
            python: {mod}:flaky
            retries: {{max: 1, delay: 0.01}}
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("flaky")
        assert (await reactor.wait_run(run.id)).status == "failed"
        await reactor.repair(run.id)
        ended = await reactor.wait_run(run.id)
    # Attempts 1 and 2 used the first run's retries; the repair's attempt 3 failed and
    # was retried: attempt 4 succeeded.
    assert ended.status == "succeeded", ended.reason
    attempts = [(a.attempt, a.status) for a in await store.attempts(run.id)]
    assert sorted(attempts) == [(1, "failed"), (2, "failed"), (3, "failed"), (4, "succeeded")]
