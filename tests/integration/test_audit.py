"""Every operator action is recorded with who asked: the audit, in the store and the API."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from helpers import processes_of, wait_for

from reactor.audit import AuditEntry
from reactor.redrive import RedriveRequest
from reactor.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

WORK = """
name: work
params:
  n: {type: integer, default: 1}
triggers:
  - on: event
    id: go
    type: work.go
tasks:
  - id: slow
    shell: "sleep 300 & sleep 300"
  - id: quick
    shell: echo quick
"""

FLAKY = """
name: flaky
tasks:
  - id: boom
    shell: exit 3
"""

DAILY = """
name: daily
tasks:
  - id: day
    shell: echo {{ logical.time }}
"""


async def test_each_operator_action_is_recorded_with_its_actor(
    write_pipeline, start_reactor, store: Store
) -> None:
    write_pipeline("work.yaml", WORK)
    write_pipeline("flaky.yaml", FLAKY)
    write_pipeline("daily.yaml", DAILY)
    async with start_reactor() as reactor:
        run = await reactor.run_now("work", {"n": 2}, actor="ana")
        await wait_for(lambda: len(processes_of(run.id)) >= 2, message="the shell's sleepers")
        await reactor.cancel_task(run.id, "slow", actor="ben")
        await reactor.wait_run(run.id)

        second = await reactor.run_now("work", actor="ana")
        await wait_for(lambda: len(processes_of(second.id)) >= 2, message="the sleepers")
        await reactor.cancel_run(second.id, actor="cleo")

        failed = await reactor.run_now("flaky", actor="dan")
        await reactor.wait_run(failed.id)
        await reactor.repair(failed.id, actor="dan")
        await reactor.wait_run(failed.id)

        await reactor.pause("work", "go", actor="eve")
        await reactor.resume("work", "go", replay=None, actor="eve")

        backfill, _ = await reactor.start_backfill(
            "daily",
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2026, 1, 3, tzinfo=UTC),
            step=86400,
            actor="fay",
        )
        await reactor.redrive(
            RedriveRequest(
                type_glob="nothing.*", start=datetime(2026, 1, 1, tzinfo=UTC), pipeline="work"
            ),
            actor="gus",
        )

    entries = list(reversed(await store.audit(limit=100)))
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("ana", "run", "work"),
        ("ben", "cancel_task", run.id),
        ("ana", "run", "work"),
        ("cleo", "cancel", second.id),
        ("dan", "run", "flaky"),
        ("dan", "repair", failed.id),
        ("eve", "pause", "work/go"),
        ("eve", "resume", "work/go"),
        ("fay", "backfill", "daily"),
        ("gus", "redrive", "work"),
    ]
    assert entries[0].detail == {"run_id": run.id, "params": {"n": 2}}
    assert entries[1].detail == {"task": "slow"}
    assert entries[5].detail == {"number": 1, "tasks": ["boom"]}
    assert entries[7].detail == {"held": 0, "replay": False}
    assert entries[8].detail == {"backfill_id": backfill.id}
    assert entries[9].detail == {"events": [], "count": 0}
    assert all(e.seq is not None and e.time.tzinfo is not None for e in entries)


async def test_the_audit_pages_and_filters_by_target(store: Store) -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    for n in range(5):
        await store.add_audit(AuditEntry(now, f"user{n}", "pause", f"p{n % 2}", {"n": n}))
    first = await store.audit(limit=2)
    assert [e.actor for e in first] == ["user4", "user3"]
    rest = await store.audit(limit=10, before=first[-1].seq)
    assert [e.actor for e in rest] == ["user2", "user1", "user0"]
    assert [e.actor for e in await store.audit(limit=10, target="p1")] == ["user3", "user1"]
    assert await store.audit(limit=10, target="nobody") == []


async def test_get_api_audit(write_pipeline, start_reactor, store: Store) -> None:
    write_pipeline("flaky.yaml", FLAKY)
    async with start_reactor(http=("127.0.0.1", 0)) as reactor:
        url = f"http://127.0.0.1:{reactor.http_port}"
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(3):
                started = await client.post(
                    "/api/pipelines/flaky/runs", json={}, headers={"X-Actor": "ops@desk"}
                )
                assert started.status_code == 201, started.text
            page = await client.get("/api/audit", params={"limit": 2})
            rest = await client.get(page.links["next"]["url"])
            only = await client.get("/api/audit", params={"target": "nothing"})
            bad = await client.get("/api/audit", params={"limit": 0})
    assert page.status_code == 200
    shown = page.json()
    assert [(e["actor"], e["action"], e["target"]) for e in shown] == [
        ("ops@desk", "run", "flaky"),
        ("ops@desk", "run", "flaky"),
    ]
    assert shown[0]["detail"]["run_id"] != shown[1]["detail"]["run_id"]
    assert len(rest.json()) == 1
    assert only.json() == []
    assert bad.status_code == 422
    assert "limit" in bad.json()["error"]
