"""The bus: every subscriber gets every item, in order; a full one slows the sender."""

from __future__ import annotations

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from reactor.bus import Bus

pytestmark = pytest.mark.anyio


async def drain(stream: MemoryObjectReceiveStream[int], into: list[int]) -> None:
    async with stream:
        async for item in stream:
            into.append(item)


async def test_every_subscriber_gets_every_item_in_order() -> None:
    bus: Bus[int] = Bus(capacity=2)
    first: list[int] = []
    second: list[int] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, bus.subscribe(), first)
            tg.start_soon(drain, bus.subscribe(), second)
            for i in range(200):
                await bus.publish(i)
            bus.close()
    assert first == list(range(200))
    assert second == list(range(200))


async def test_a_full_subscriber_blocks_publish_until_it_reads() -> None:
    bus: Bus[int] = Bus(capacity=1)
    slow = bus.subscribe()
    fast = bus.subscribe()
    published: list[int] = []

    async def publish(item: int) -> None:
        await bus.publish(item)
        published.append(item)

    with anyio.fail_after(5):
        await publish(1)  # fits in both buffers
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish, 2)
            await anyio.wait_all_tasks_blocked()
            # Both buffers are full: the sender waits instead of dropping item 2.
            assert published == [1]
            assert slow.statistics().tasks_waiting_send == 1

            assert await slow.receive() == 1
            await anyio.wait_all_tasks_blocked()
            # The slow one had room; now the other subscriber is full.
            assert published == [1]
            assert fast.statistics().tasks_waiting_send == 1

            assert await fast.receive() == 1
        assert published == [1, 2]
        assert await slow.receive() == 2
        assert await fast.receive() == 2


async def test_close_ends_subscriber_loops_after_what_is_queued() -> None:
    bus: Bus[int] = Bus(capacity=10)
    got: list[int] = []
    stream = bus.subscribe()
    with anyio.fail_after(5):
        for i in range(5):
            await bus.publish(i)
        bus.close()
        await drain(stream, got)
    assert got == [0, 1, 2, 3, 4]


async def test_close_ends_a_waiting_subscriber_loop() -> None:
    bus: Bus[int] = Bus()
    got: list[int] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, bus.subscribe(), got)
            await anyio.wait_all_tasks_blocked()
            bus.close()
    assert got == []


async def test_publish_with_no_subscribers_returns() -> None:
    bus: Bus[int] = Bus()
    with anyio.fail_after(5):
        await bus.publish(1)


def test_subscribing_to_a_closed_bus_is_an_error() -> None:
    bus: Bus[int] = Bus()
    bus.close()
    with pytest.raises(RuntimeError) as caught:
        bus.subscribe()
    assert str(caught.value) == "the bus is closed"
