"""The fatigue policy: which occurrences become messages, and when. Pure: no I/O, the
time is always passed in.

An *incident* is kept per alert (a *route*) and key (pipeline, kind and, for some kinds,
a trigger). Its first occurrence is sent at once when the key is idle; occurrences within
the group window after it are folded into one follow-up sent when the window ends; after
that, no message of the key for ``cooldown`` after the last one (what comes in meanwhile is
folded into the next). A recovery closes the incident with a recovery message, under the
same spacing; an occurrence before that message went out reopens the incident (flapping).
During quiet hours nothing is sent; when they end, one summary per destination carries
everything held.

The spacing gives the bound of :func:`message_bound`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

__all__ = [
    "Fatigue",
    "Incident",
    "Message",
    "QuietHours",
    "Route",
    "message_bound",
]

MessageKind = Literal["alert", "followup", "recovery", "summary"]
#: Run ids an incident keeps (the newest).
MAX_RUN_IDS = 10


def message_bound(seconds: float, group_window: float, cooldown: float) -> int:
    """The most messages one route and key can send in ``seconds``, whatever happens:
    ``1 + 2 * (seconds + cooldown) / (min(group_window, cooldown) + cooldown)``.

    Every gap between two messages is at least ``cooldown``, except the gap after a first
    message sent at once, which is at least ``min(group_window, cooldown)`` and is followed
    by a gap of at least ``cooldown``: of two gaps in a row, one is a cooldown.
    """
    short = min(group_window, cooldown)
    return 1 + int(2 * (seconds + cooldown) / (short + cooldown))


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` to ``end`` (local time of ``zone``; over midnight when ``end`` is
    earlier), every day."""

    start: time
    end: time
    zone: str = "UTC"

    def _local(self, now: datetime) -> datetime:
        return now.astimezone(ZoneInfo(self.zone))

    def contains(self, now: datetime) -> bool:
        local = self._local(now).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, now: datetime) -> datetime:
        """When the quiet period ``now`` is in ends (``now`` must be quiet)."""
        local = self._local(now)
        end = local.replace(
            hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0, fold=0
        )
        if end <= local:
            end = (end.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=local.tzinfo)
        return end.astimezone(now.tzinfo)


@dataclass(frozen=True)
class Route:
    """One alert of one pipeline: where its messages go and its fatigue settings."""

    #: ``pipeline#index`` (the pipeline's own ``alerts:``) or ``pipeline#defaults.index``.
    id: str
    pipeline: str
    #: The alert's ``on:``; a ``recovery`` route watches failures but tells only recoveries.
    on: str
    #: Names the destination (summaries are one per destination).
    destination: str
    group_window: float
    cooldown: float

    @property
    def kind(self) -> str:
        """The kind of incident: a ``recovery`` route follows ``failure`` incidents."""
        return "failure" if self.on == "recovery" else self.on

    @property
    def tells_openings(self) -> bool:
        return self.on != "recovery"

    @property
    def recovers(self) -> bool:
        """Whether something ends this kind of incident (else it closes once quiet)."""
        return self.kind not in ("correlation_timeout", "anomaly")


@dataclass
class Incident:
    """What one route knows of one key: counts, times, and what was told."""

    id: str
    route: str
    pipeline: str
    kind: str
    subject: str | None
    opened_at: datetime
    last_at: datetime
    #: Occurrences in all.
    count: int = 1
    #: Occurrences not in any message yet, and when the first of them came.
    unreported: int = 1
    pending_since: datetime | None = None
    messages: int = 0
    last_sent_at: datetime | None = None
    #: The last message was a first one sent at once: a follow-up may come a group
    #: window after it (else a cooldown after it).
    window: bool = False
    #: No message of the key before this (carried over from the key's previous incident).
    not_before: datetime | None = None
    #: A recovery came and is not told yet.
    recovered_at: datetime | None = None
    closed_at: datetime | None = None
    #: Something came during quiet hours: the summary at their end carries it.
    held: bool = False
    run_ids: list[str] = field(default_factory=list)
    detail: str = ""
    #: How many times it recovered and failed again before a recovery was told.
    flaps: int = 0

    @property
    def key(self) -> str:
        """``pipeline/kind`` or ``pipeline/kind/subject``: what the incident is about."""
        return "/".join(p for p in (self.pipeline, self.kind, self.subject) if p)

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name, value in data.items():
            if isinstance(value, datetime):
                data[name] = value.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Incident:
        values = dict(data)
        for name in (
            "opened_at",
            "last_at",
            "pending_since",
            "last_sent_at",
            "not_before",
            "recovered_at",
            "closed_at",
        ):
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)

    def view(self) -> dict[str, Any]:
        """What the API and messages show."""
        return {
            "id": self.id,
            "key": self.key,
            "alert": self.route,
            "pipeline": self.pipeline,
            "kind": self.kind,
            "subject": self.subject,
            "status": "open" if self.open else "closed",
            "count": self.count,
            "opened_at": self.opened_at.isoformat(),
            "last_at": self.last_at.isoformat(),
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "recovered_at": self.recovered_at.isoformat() if self.recovered_at else None,
            "messages": self.messages,
            "last_sent_at": self.last_sent_at.isoformat() if self.last_sent_at else None,
            "run_ids": list(self.run_ids),
            "detail": self.detail,
            "flaps": self.flaps,
        }


@dataclass(frozen=True)
class Message:
    """One message to send: about one incident, or (``summary``) several."""

    kind: MessageKind
    destination: str
    at: datetime
    #: Each incident as it stands, with ``new``: the occurrences this message is the first
    #: to tell of.
    incidents: tuple[dict[str, Any], ...]
    #: The route of a single-incident message (``None`` for a summary).
    route: str | None = None


class Fatigue:
    """Every route's incidents; ``occur``/``recover``/``tick`` return what to send now."""

    def __init__(self, quiet: QuietHours | None, new_id: Callable[[], str]) -> None:
        self.quiet = quiet
        self._new_id = new_id
        self.routes: dict[str, Route] = {}
        #: The latest incident (open or closed) by ``route id|key``.
        self.incidents: dict[str, Incident] = {}
        #: Incidents changed since :meth:`take_changed` (to be stored).
        self._changed: dict[str, Incident] = {}

    # State

    def set_routes(self, routes: Iterable[Route]) -> None:
        self.routes = {route.id: route for route in routes}

    def load(self, incidents: Iterable[Incident]) -> None:
        """Take over stored incidents (the newest of each key wins)."""
        for incident in incidents:
            slot = f"{incident.route}|{incident.key}"
            known = self.incidents.get(slot)
            if known is None or incident.last_at >= known.last_at:
                self.incidents[slot] = incident

    def take_changed(self) -> list[Incident]:
        changed, self._changed = list(self._changed.values()), {}
        return changed

    def open_incidents(self) -> list[Incident]:
        return sorted((i for i in self.incidents.values() if i.open), key=lambda i: i.opened_at)

    def _touch(self, incident: Incident) -> None:
        self._changed[incident.id] = incident

    # Inputs

    def occur(
        self,
        route: Route,
        now: datetime,
        *,
        subject: str | None = None,
        run_id: str | None = None,
        detail: str = "",
    ) -> list[Message]:
        """Something went wrong once more for ``route`` (and ``subject``)."""
        slot = self._slot(route, subject)
        incident = self.incidents.get(slot)
        if incident is None or not incident.open:
            incident = Incident(
                id=self._new_id(),
                route=route.id,
                pipeline=route.pipeline,
                kind=route.kind,
                subject=subject,
                opened_at=now,
                last_at=now,
                pending_since=now,
                not_before=self._earliest(incident, route) if incident is not None else None,
            )
            self.incidents[slot] = incident
        else:
            incident.count += 1
            incident.unreported += 1
            incident.last_at = now
            if incident.pending_since is None:
                incident.pending_since = now
            if incident.recovered_at is not None:
                incident.recovered_at = None
                incident.flaps += 1
        if run_id is not None:
            incident.run_ids = [*incident.run_ids, run_id][-MAX_RUN_IDS:]
        if detail:
            incident.detail = detail
        self._touch(incident)
        return self._flush(incident, route, now)

    def recover(
        self, route: Route, now: datetime, *, subject: str | None = None, detail: str = ""
    ) -> list[Message]:
        """It is fine again; nothing if no incident of the key is open."""
        incident = self.incidents.get(self._slot(route, subject))
        if incident is None or not incident.open or incident.recovered_at is not None:
            return []
        incident.recovered_at = now
        if incident.pending_since is None:
            incident.pending_since = now
        if detail:
            incident.detail = detail
        self._touch(incident)
        return self._flush(incident, route, now)

    def tick(self, now: datetime) -> list[Message]:
        """What is due at ``now``: follow-ups, held messages, a quiet-hours summary."""
        messages: list[Message] = []
        quiet = self.quiet is not None and self.quiet.contains(now)
        if not quiet:
            messages += self._summaries(now)
        for incident in list(self.incidents.values()):
            route = self.routes.get(incident.route)
            if route is None and incident.open:
                # Its alert was removed (or its pipeline is gone): nothing will tell it.
                incident.closed_at = now
                incident.detail = "closed without a message: its alert is gone"
                self._touch(incident)
            if route is None or not incident.open:
                continue
            messages += self._flush(incident, route, now)
            if (
                incident.open
                and not route.recovers
                and incident.unreported == 0
                and now >= incident.last_at + timedelta(seconds=route.cooldown)
            ):
                # Nothing ends a timeout or an anomaly: quiet for a cooldown, it is over.
                incident.closed_at = now
                self._touch(incident)
        return messages

    def next_due(self, now: datetime) -> datetime | None:
        """When :meth:`tick` next has something to do (``None``: nothing is waiting)."""
        times: list[datetime] = []
        quiet = self.quiet is not None and self.quiet.contains(now)
        for incident in self.incidents.values():
            route = self.routes.get(incident.route)
            if route is None or not incident.open:
                continue
            if quiet and (incident.held or self._news(incident, route)):
                assert self.quiet is not None
                times.append(self.quiet.end_after(now))
            elif incident.held:
                times.append(now)
            elif self._news(incident, route):
                due = self._earliest(incident, route)
                times.append(due if due is not None else now)
            if not route.recovers:
                times.append(incident.last_at + timedelta(seconds=route.cooldown))
        return min(times) if times else None

    # The rules

    @staticmethod
    def _slot(route: Route, subject: str | None) -> str:
        return f"{route.id}|{'/'.join(p for p in (route.pipeline, route.kind, subject) if p)}"

    @staticmethod
    def _earliest(incident: Incident, route: Route) -> datetime | None:
        """No message of this key before this time (``None``: any time)."""
        if incident.last_sent_at is None:
            return incident.not_before
        window_end = incident.last_sent_at + timedelta(seconds=route.group_window)
        if (
            incident.window
            and incident.pending_since is not None
            and incident.pending_since < window_end
        ):
            return window_end
        return incident.last_sent_at + timedelta(seconds=route.cooldown)

    @staticmethod
    def _news(incident: Incident, route: Route) -> bool:
        """Whether the incident has something to tell on this route."""
        if incident.recovered_at is not None:
            return True
        return incident.unreported > 0 and route.tells_openings

    def _flush(self, incident: Incident, route: Route, now: datetime) -> list[Message]:
        if not incident.open or not self._news(incident, route):
            return []
        if self.quiet is not None and self.quiet.contains(now):
            incident.held = True
            self._touch(incident)
            return []
        if incident.held:
            return []  # the summary (next tick) tells it
        due = self._earliest(incident, route)
        if due is not None and now < due:
            return []
        at_once = incident.messages == 0 and incident.recovered_at is None and due is None
        at_once = at_once and incident.opened_at == now
        if incident.recovered_at is not None:
            kind: MessageKind = "recovery"
        elif incident.messages == 0:
            kind = "alert"
        else:
            kind = "followup"
        view = self._told(incident, now, window=at_once)
        return [Message(kind, route.destination, now, (view,), route.id)]

    def _told(self, incident: Incident, now: datetime, *, window: bool) -> dict[str, Any]:
        """Mark everything the incident holds as told at ``now``; its view with ``new``."""
        new = incident.unreported
        incident.messages += 1
        incident.last_sent_at = now
        incident.window = window
        incident.unreported = 0
        incident.pending_since = None
        incident.held = False
        if incident.recovered_at is not None:
            incident.closed_at = now
        self._touch(incident)
        return incident.view() | {"new": new}

    def _summaries(self, now: datetime) -> list[Message]:
        held: dict[str, list[Incident]] = defaultdict(list)
        for incident in self.incidents.values():
            route = self.routes.get(incident.route)
            if route is None or not incident.open or not incident.held:
                continue
            due = self._earliest(incident, route)
            if due is not None and now < due:
                # Told too recently before the quiet hours: it waits for its own time.
                incident.held = False
                self._touch(incident)
            else:
                held[route.destination].append(incident)
        messages = []
        for destination, incidents in held.items():
            views = tuple(
                self._told(i, now, window=False)
                for i in sorted(incidents, key=lambda i: i.opened_at)
            )
            messages.append(Message("summary", destination, now, views))
        return messages
