"""Helpers for integration tests: waiting on stored runs, and moving a fake clock."""

from __future__ import annotations

import anyio
from helpers import wait_for

from reactor.clock import FakeClock
from reactor.store import RunRecord, Store
from reactor.store.records import FINAL_RUN_STATES


async def wait_run(store: Store, run_id: str, *, timeout: float = 10.0) -> RunRecord:
    """Wait until the stored run is final; returns it."""

    async def final() -> bool:
        run = await store.get_run(run_id)
        return run is not None and run.status in FINAL_RUN_STATES

    await wait_for(final, timeout=timeout, message=f"run {run_id} to finish")
    run = await store.get_run(run_id)
    assert run is not None
    return run


async def pump(clock: FakeClock, *, step: float = 1.0, idle_sleepers: int = 1) -> None:
    """Advance ``clock`` by ``step`` each time more than ``idle_sleepers`` tasks sleep on it.

    The service's heartbeat always sleeps on the clock; anything beyond it (a retry delay,
    a timeout) is what a test waits through, so time only moves when someone waits on it.
    """
    while True:
        await clock.wait_for_sleepers(idle_sleepers + 1)
        clock.advance(step)
        await anyio.lowlevel.checkpoint()
