"""Where time comes from: the real clock, and a fake one tests drive by hand."""

from __future__ import annotations

import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio

__all__ = ["Clock", "FakeClock", "SystemClock", "run_with_timeout"]


class Clock(Protocol):
    """Wall time for records, monotonic time for intervals, and sleeping."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Sleepers wake in deadline order as time passes them, so a test of a
    retry delay or a settle window takes no wall time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._counter = itertools.count()
        self._changed = anyio.Event()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock right now."""
        return len(self._sleepers)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        woken = anyio.Event()
        entry = (self._elapsed + seconds, next(self._counter), woken)
        heapq.heappush(self._sleepers, entry)
        self._changed.set()
        self._changed = anyio.Event()
        try:
            await woken.wait()
        finally:
            # A cancelled sleeper is no longer asleep: it must not count in ``sleepers``.
            if not woken.is_set():
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Wait until at least ``count`` tasks sleep on this clock."""
        while len(self._sleepers) < count:
            await self._changed.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._elapsed += seconds
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, woken = heapq.heappop(self._sleepers)
            woken.set()


async def run_with_timeout(clock: Clock, seconds: float | None, fn: Any) -> Any:
    """Await ``fn()``; ``TimeoutError`` once ``seconds`` of ``clock`` time have passed."""
    if seconds is None:
        return await fn()
    result: list[Any] = []
    failure: list[Exception] = []
    expired = False
    async with anyio.create_task_group() as tg:

        async def watchdog() -> None:
            nonlocal expired
            await clock.sleep(seconds)
            expired = True
            tg.cancel_scope.cancel()

        async def work() -> None:
            # Kept out of the task group so the caller sees fn's own error, not a group.
            try:
                result.append(await fn())
            except Exception as exc:
                failure.append(exc)
            tg.cancel_scope.cancel()

        tg.start_soon(watchdog)
        tg.start_soon(work)
    if failure:
        raise failure[0]
    if expired and not result:
        raise TimeoutError(f"timed out after {seconds}s")
    return result[0]
