"""Live changes for the browsers watching: runs, tasks and decided events, by topic."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from reactor.events import Event
from reactor.store.records import RunRecord, TaskRecord

__all__ = ["EVENTS", "RUNS", "LiveHub", "Message", "Subscription", "run_topic"]

#: ``(kind, payload)``: what changed, as the page's script receives it.
Message = tuple[str, dict[str, Any]]

#: Every run's changes (the pipelines and runs lists).
RUNS = "runs"
#: Every decided event (the events page).
EVENTS = "events"


def run_topic(run_id: str) -> str:
    return f"run:{run_id}"


def _when(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def run_message(run: RunRecord) -> Message:
    return "run", {
        "id": run.id,
        "pipeline": run.pipeline,
        "status": run.status,
        "started_at": _when(run.started_at),
        "ended_at": _when(run.ended_at),
        "reason": run.reason,
    }


def task_message(task: TaskRecord, note: str) -> Message:
    return "task", {
        "task_id": task.task_id,
        "status": task.status,
        "attempts": task.attempts,
        "started_at": _when(task.started_at),
        "ended_at": _when(task.ended_at),
        "error": task.error,
        "note": note,
    }


class Subscription:
    """One watcher's queue; when it falls too far behind it is closed, and the browser
    reconnects and starts again from the current state (its EventSource does that itself)."""

    def __init__(self, hub: LiveHub, topic: str, capacity: int) -> None:
        self.topic = topic
        self._hub = hub
        self._send: MemoryObjectSendStream[Message]
        self._send, self.receive = anyio.create_memory_object_stream[Message](capacity)

    def offer(self, message: Message) -> None:
        try:
            self._send.send_nowait(message)
        except anyio.WouldBlock:
            self.close()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._hub.leave(self)

    def close(self) -> None:
        self._hub.leave(self)
        self._send.close()

    async def __aenter__(self) -> MemoryObjectReceiveStream[Message]:
        return self.receive

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        self.receive.close()


class LiveHub:
    """A :class:`~reactor.executor.RunObserver` that hands every change to the watchers of
    its topics; a change nobody watches costs one dict lookup."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._topics: defaultdict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, topic: str) -> Subscription:
        subscription = Subscription(self, topic, self.capacity)
        self._topics[topic].add(subscription)
        return subscription

    def leave(self, subscription: Subscription) -> None:
        watchers = self._topics.get(subscription.topic)
        if watchers is not None:
            watchers.discard(subscription)
            if not watchers:
                del self._topics[subscription.topic]

    def close_all(self) -> None:
        """End every stream (the service is stopping): browsers see the stream end."""
        for watchers in list(self._topics.values()):
            for subscription in list(watchers):
                subscription.close()

    def watched(self, topic: str) -> bool:
        return topic in self._topics

    def publish(self, topic: str, message: Message) -> None:
        watchers = self._topics.get(topic)
        if watchers:
            for subscription in list(watchers):
                subscription.offer(message)

    # RunObserver

    def run_changed(self, run: RunRecord) -> None:
        by_run = run_topic(run.id)
        if RUNS in self._topics or by_run in self._topics:
            message = run_message(run)
            self.publish(RUNS, message)
            self.publish(by_run, message)

    def task_changed(self, run: RunRecord, task: TaskRecord, note: str) -> None:
        topic = run_topic(run.id)
        if topic in self._topics:
            self.publish(topic, task_message(task, note))

    # Events, as the rule engine decided them

    def event_decided(self, event: Event, outcome: list[dict[str, Any]]) -> None:
        if EVENTS in self._topics:
            self.publish(EVENTS, ("event", {"event": event, "outcome": outcome}))
