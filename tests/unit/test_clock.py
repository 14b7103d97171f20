"""Clocks: the fake clock tests drive by hand, and timeouts measured on any clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream

from reactor.clock import FakeClock, SystemClock, run_with_timeout

pytestmark = pytest.mark.anyio

START = datetime(2026, 1, 1, tzinfo=UTC)


async def sleeper(
    clock: FakeClock, seconds: float, name: str, out: MemoryObjectSendStream[str]
) -> None:
    await clock.sleep(seconds)
    await out.send(name)


async def test_fake_clock_starts_at_its_start_and_moves_only_when_advanced() -> None:
    clock = FakeClock()
    assert clock.now() == START
    assert clock.monotonic() == 0.0
    clock.advance(90)
    assert clock.now() == START + timedelta(seconds=90)
    assert clock.monotonic() == 90.0
    other = FakeClock(datetime(2030, 5, 1, tzinfo=UTC))
    assert other.now() == datetime(2030, 5, 1, tzinfo=UTC)


async def test_sleepers_wake_in_deadline_order_as_time_passes() -> None:
    clock = FakeClock()
    send, woke = anyio.create_memory_object_stream[str](10)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper, clock, 3, "three", send)
            tg.start_soon(sleeper, clock, 1, "one", send)
            tg.start_soon(sleeper, clock, 2, "two", send)
            tg.start_soon(sleeper, clock, 2, "two-again", send)
            await clock.wait_for_sleepers(4)
            assert clock.sleepers == 4

            clock.advance(0.5)
            assert clock.sleepers == 4
            clock.advance(0.5)
            assert await woke.receive() == "one"
            assert clock.sleepers == 3

            clock.advance(1.5)
            assert [await woke.receive(), await woke.receive()] == ["two", "two-again"]
            assert clock.sleepers == 1

            clock.advance(100)
            assert await woke.receive() == "three"
            assert clock.sleepers == 0


async def test_one_advance_past_several_deadlines_wakes_them_in_order() -> None:
    clock = FakeClock()
    send, woke = anyio.create_memory_object_stream[str](10)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for seconds in (5, 1, 3):
                tg.start_soon(sleeper, clock, seconds, f"{seconds}s", send)
            await clock.wait_for_sleepers(3)
            clock.advance(10)
            got = [await woke.receive() for _ in range(3)]
    assert sorted(got) == ["1s", "3s", "5s"]


async def test_a_sleep_of_zero_or_less_returns_at_once() -> None:
    clock = FakeClock()
    with anyio.fail_after(5):
        await clock.sleep(0)
        await clock.sleep(-1)
    assert clock.sleepers == 0


async def test_a_cancelled_sleeper_no_longer_counts() -> None:
    clock = FakeClock()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.sleep, 10)
            await clock.wait_for_sleepers(1)
            tg.cancel_scope.cancel()
    assert clock.sleepers == 0


# --- run_with_timeout ----------------------------------------------------------------------------


async def test_run_with_timeout_returns_the_value_before_the_deadline() -> None:
    clock = FakeClock()
    release = anyio.Event()
    results: list[object] = []

    async def work() -> str:
        await release.wait()
        return "done"

    async def call() -> None:
        results.append(await run_with_timeout(clock, 5, work))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await clock.wait_for_sleepers(1)
            clock.advance(4.9)
            release.set()
    assert results == ["done"]
    assert clock.sleepers == 0


async def test_run_with_timeout_raises_once_the_clock_passes_the_deadline() -> None:
    clock = FakeClock()
    never = anyio.Event()
    failures: list[BaseException] = []

    async def work() -> None:
        await never.wait()

    async def call() -> None:
        try:
            await run_with_timeout(clock, 5, work)
        except TimeoutError as exc:
            failures.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await clock.wait_for_sleepers(1)
            clock.advance(4)
            await anyio.wait_all_tasks_blocked()
            assert failures == []
            clock.advance(1)
    assert [str(f) for f in failures] == ["timed out after 5s"]


async def test_run_with_timeout_passes_the_work_error_through_as_itself() -> None:
    clock = FakeClock()

    async def work() -> None:
        raise ValueError("bad input")

    with anyio.fail_after(5), pytest.raises(ValueError) as caught:
        await run_with_timeout(clock, 5, work)
    assert str(caught.value) == "bad input"


async def test_run_with_timeout_without_a_limit_just_awaits() -> None:
    clock = FakeClock()

    async def work() -> int:
        return 7

    with anyio.fail_after(5):
        assert await run_with_timeout(clock, None, work) == 7
        assert await run_with_timeout(clock, 1, work) == 7
    assert clock.sleepers == 0


async def test_system_clock_is_timezone_aware_and_monotonic() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo is not None
    first = clock.monotonic()
    assert clock.monotonic() >= first
    with anyio.fail_after(5):
        await clock.sleep(-1)  # negative sleeps return at once
