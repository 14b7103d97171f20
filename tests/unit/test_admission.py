"""Admission policy: what a new run does given its pipeline's active and queued runs."""

from __future__ import annotations

import anyio
import pytest

from reactor.admission import LocalRunSlots, LocalTaskSlots, plan_admission

POLICIES = ["queue", "skip", "cancel_running", "allow"]


@pytest.mark.parametrize("on_overlap", POLICIES)
def test_below_the_limit_every_policy_starts(on_overlap: str) -> None:
    assert plan_admission(active=0, queued=0, max_active_runs=1, on_overlap=on_overlap) == "start"
    assert plan_admission(active=3, queued=0, max_active_runs=4, on_overlap=on_overlap) == "start"


@pytest.mark.parametrize(
    ("on_overlap", "plan"),
    [
        ("queue", "queue"),
        ("skip", "skip"),
        ("cancel_running", "cancel_running"),
        ("allow", "start"),
    ],
)
def test_at_the_limit_the_policy_decides(on_overlap: str, plan: str) -> None:
    assert plan_admission(active=4, queued=0, max_active_runs=4, on_overlap=on_overlap) == plan
    assert plan_admission(active=1, queued=0, max_active_runs=1, on_overlap=on_overlap) == plan


@pytest.mark.parametrize(
    ("on_overlap", "plan"),
    [
        ("queue", "queue"),
        ("skip", "skip"),
        ("cancel_running", "cancel_running"),
        ("allow", "start"),
    ],
)
def test_above_the_limit_the_policy_decides(on_overlap: str, plan: str) -> None:
    # A limit lowered by a reload can leave more runs active than it allows.
    assert plan_admission(active=6, queued=2, max_active_runs=4, on_overlap=on_overlap) == plan


@pytest.mark.parametrize("on_overlap", ["queue", "skip", "cancel_running"])
def test_below_the_limit_a_new_run_waits_behind_queued_ones(on_overlap: str) -> None:
    # Runs start in arrival order: with others queued, a new one joins the queue.
    assert plan_admission(active=1, queued=1, max_active_runs=4, on_overlap=on_overlap) == "queue"


@pytest.mark.parametrize("on_overlap", ["queue", "skip", "cancel_running"])
def test_queued_runs_count_towards_the_limit(on_overlap: str) -> None:
    plan = plan_admission(active=2, queued=2, max_active_runs=4, on_overlap=on_overlap)
    assert plan == on_overlap


def test_allow_ignores_the_limit_and_the_queue() -> None:
    assert plan_admission(active=100, queued=5, max_active_runs=1, on_overlap="allow") == "start"


def test_local_run_slots_count_per_pipeline_oldest_first() -> None:
    slots = LocalRunSlots()
    slots.acquire("a", "r1")
    slots.acquire("a", "r2")
    slots.acquire("b", "r3")
    assert (slots.active("a"), slots.active("b"), slots.active("c")) == (2, 1, 0)
    assert slots.running("a") == ["r1", "r2"]
    slots.release("a", "r1")
    slots.release("a", "unknown")
    assert slots.running("a") == ["r2"]
    slots.acquire("a", "r2")
    assert slots.active("a") == 1


@pytest.mark.anyio
async def test_local_task_slots_share_one_limit() -> None:
    slots = LocalTaskSlots(2)
    release = anyio.Event()
    inside: list[int] = []

    async def task(n: int) -> None:
        async with slots.slot():
            inside.append(n)
            await release.wait()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(task, n)
            await anyio.wait_all_tasks_blocked()
            assert len(inside) == 2
            assert slots.limiter.statistics().tasks_waiting == 1
            release.set()
    assert sorted(inside) == [0, 1, 2]
    assert slots.limiter.available_tokens == 2
