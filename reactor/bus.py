"""A bounded fan-out bus: every subscriber gets every item; a full subscriber slows the sender."""

from __future__ import annotations

from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["Bus"]

T = TypeVar("T")


class Bus(Generic[T]):
    """Fan-out through bounded memory streams; nothing is dropped, senders wait instead."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._senders: list[MemoryObjectSendStream[T]] = []
        self._closed = False

    def subscribe(self) -> MemoryObjectReceiveStream[T]:
        if self._closed:
            raise RuntimeError("the bus is closed")
        send, receive = anyio.create_memory_object_stream[T](self.capacity)
        self._senders.append(send)
        return receive

    async def publish(self, item: T) -> None:
        """Deliver ``item`` to every subscriber, waiting while any of them is full."""
        for sender in self._senders:
            await sender.send(item)

    def close(self) -> None:
        """No more items: subscribers finish what is queued, then their loops end."""
        self._closed = True
        for sender in self._senders:
            sender.close()
