"""The fatigue policy (reactor/alerting/fatigue.py) on a fake clock: datetimes passed in."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reactor.alerting.fatigue import Fatigue, Incident, Message, QuietHours, Route, message_bound

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW = 300.0
COOLDOWN = 1800.0


def route(on: str = "failure", pipeline: str = "orders", index: int = 0, **kw: float) -> Route:
    return Route(
        f"{pipeline}#alerts[{index}]",
        pipeline,
        on,
        str(kw.pop("destination", f"webhook:{pipeline}")),
        kw.get("group_window", WINDOW),
        kw.get("cooldown", COOLDOWN),
    )


def policy(*routes: Route, quiet: QuietHours | None = None) -> Fatigue:
    ids = itertools.count(1)
    _TICKED.clear()
    fatigue = Fatigue(quiet, lambda: f"inc{next(ids)}")
    fatigue.set_routes(routes)
    return fatigue


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


#: When each policy was last ticked (by ``id``).
_TICKED: dict[int, datetime] = {}


def run_until(fatigue: Fatigue, end: datetime) -> list[Message]:
    """Tick at every due time from the last tick up to ``end`` (as the alerter's loop does:
    it asks ``next_due`` after each tick)."""
    sent: list[Message] = []
    known = [i.last_at for i in fatigue.incidents.values()]
    now = max([_TICKED.get(id(fatigue), T0), *known])
    while True:
        due = fatigue.next_due(now)
        if due is None or due >= end:
            break
        now = max(due, now)
        sent += fatigue.tick(now)
    _TICKED[id(fatigue)] = end
    return sent + fatigue.tick(end)


def summary(message: Message) -> tuple[str, int, int]:
    [incident] = message.incidents
    return message.kind, incident["new"], incident["count"]


def test_first_alert_at_once_then_one_follow_up_with_the_count() -> None:
    r = route()
    fatigue = policy(r)
    [first] = fatigue.occur(r, at(0), run_id="run1", detail="boom")
    assert summary(first) == ("alert", 1, 1)
    assert first.incidents[0]["run_ids"] == ["run1"]
    assert first.incidents[0]["detail"] == "boom"
    for second in range(10, 300, 10):
        assert fatigue.occur(r, at(second), run_id=f"run{second}") == []
    assert run_until(fatigue, at(299)) == []
    [follow] = run_until(fatigue, at(300))
    assert follow.at == at(300)
    assert summary(follow) == ("followup", 29, 30)
    assert len(follow.incidents[0]["run_ids"]) == 10  # the newest ten


def test_after_the_follow_up_a_cooldown_then_one_message_with_what_came() -> None:
    r = route()
    fatigue = policy(r)
    fatigue.occur(r, at(0))
    fatigue.occur(r, at(10))
    [follow] = run_until(fatigue, at(300))
    assert summary(follow) == ("followup", 1, 2)
    for second in range(400, 2000, 100):
        assert fatigue.occur(r, at(second)) == []
    assert run_until(fatigue, at(300 + COOLDOWN - 1)) == []
    [later] = run_until(fatigue, at(300 + COOLDOWN))
    assert summary(later) == ("followup", 16, 18)


def test_an_occurrence_after_a_quiet_window_waits_for_the_cooldown() -> None:
    r = route()
    fatigue = policy(r)
    fatigue.occur(r, at(0))
    assert run_until(fatigue, at(600)) == []  # nothing to follow up
    assert fatigue.occur(r, at(700)) == []
    [later] = run_until(fatigue, at(COOLDOWN))
    assert summary(later) == ("followup", 1, 2)


def test_a_recovery_closes_the_incident_with_a_recovery_message() -> None:
    r = route()
    fatigue = policy(r)
    fatigue.occur(r, at(0))
    assert fatigue.recover(r, at(60), detail="run x succeeded") == []  # in the window
    [recovery] = run_until(fatigue, at(WINDOW))
    assert summary(recovery) == ("recovery", 0, 1)
    assert recovery.incidents[0]["status"] == "closed"
    assert recovery.incidents[0]["recovered_at"] == at(60).isoformat()
    assert fatigue.open_incidents() == []
    # Told once: a second success says nothing.
    assert fatigue.recover(r, at(400)) == []


def test_a_recovery_long_after_the_alert_is_sent_at_once() -> None:
    r = route()
    fatigue = policy(r)
    fatigue.occur(r, at(0))
    [recovery] = fatigue.recover(r, at(COOLDOWN + 1))
    assert summary(recovery) == ("recovery", 0, 1)


def test_a_new_incident_soon_after_a_recovery_waits_for_the_key_cooldown() -> None:
    r = route()
    fatigue = policy(r)
    fatigue.occur(r, at(0))
    [recovery] = fatigue.recover(r, at(COOLDOWN + 1))
    assert fatigue.occur(r, at(COOLDOWN + 10)) == []
    [alert] = run_until(fatigue, at(2 * COOLDOWN + 1))
    assert summary(alert) == ("alert", 1, 1)
    assert alert.incidents[0]["id"] != recovery.incidents[0]["id"]


def test_a_failure_before_the_recovery_is_told_reopens_the_incident() -> None:
    r = route()
    fatigue = policy(r)
    fatigue.occur(r, at(0))
    fatigue.recover(r, at(10))
    fatigue.occur(r, at(20))
    [follow] = run_until(fatigue, at(WINDOW))
    assert summary(follow) == ("followup", 1, 2)
    assert follow.incidents[0]["flaps"] == 1
    assert follow.incidents[0]["status"] == "open"
    assert len(fatigue.open_incidents()) == 1


def test_keys_and_routes_are_apart() -> None:
    failure, duration = route(), route("duration", index=1)
    other = route(pipeline="billing")
    fatigue = policy(failure, duration, other)
    assert len(fatigue.occur(failure, at(0))) == 1
    assert len(fatigue.occur(duration, at(1))) == 1
    assert len(fatigue.occur(other, at(2))) == 1
    stale = route("stale", index=2)
    fatigue.set_routes([failure, duration, other, stale])
    assert len(fatigue.occur(stale, at(3), subject="inbox")) == 1
    assert len(fatigue.occur(stale, at(4), subject="schedule")) == 1
    keys = sorted(i.key for i in fatigue.open_incidents())
    assert keys == [
        "billing/failure",
        "orders/duration",
        "orders/failure",
        "orders/stale/inbox",
        "orders/stale/schedule",
    ]


def test_a_recovery_route_tells_only_recoveries() -> None:
    r = route("recovery")
    fatigue = policy(r)
    assert fatigue.occur(r, at(0)) == []
    assert fatigue.occur(r, at(10)) == []
    assert run_until(fatigue, at(COOLDOWN * 3)) == []
    [recovery] = fatigue.recover(r, at(COOLDOWN * 3))
    assert summary(recovery) == ("recovery", 2, 2)


def test_timeouts_and_anomalies_close_quietly_after_a_cooldown() -> None:
    r = route("correlation_timeout")
    fatigue = policy(r)
    [alert] = fatigue.occur(r, at(0), subject="paid_and_shipped", detail="key 'A-1'")
    assert alert.incidents[0]["key"] == "orders/correlation_timeout/paid_and_shipped"
    assert run_until(fatigue, at(COOLDOWN - 1)) == []
    assert len(fatigue.open_incidents()) == 1
    assert run_until(fatigue, at(COOLDOWN)) == []
    assert fatigue.open_incidents() == []
    assert fatigue.recover(r, at(COOLDOWN + 1), subject="paid_and_shipped") == []


NIGHT = QuietHours(time(22, 0), time(7, 0), "Europe/Amsterdam")


def test_quiet_hours_over_midnight_in_their_timezone() -> None:
    # 2026-03-02 is in winter time: Amsterdam is UTC+1.
    assert not NIGHT.contains(datetime(2026, 3, 2, 20, 59, tzinfo=UTC))
    assert NIGHT.contains(datetime(2026, 3, 2, 21, 0, tzinfo=UTC))
    assert NIGHT.contains(datetime(2026, 3, 3, 5, 59, tzinfo=UTC))
    assert not NIGHT.contains(datetime(2026, 3, 3, 6, 0, tzinfo=UTC))
    assert NIGHT.end_after(datetime(2026, 3, 2, 21, 0, tzinfo=UTC)) == datetime(
        2026, 3, 3, 6, 0, tzinfo=UTC
    )
    assert NIGHT.end_after(datetime(2026, 3, 3, 1, 0, tzinfo=UTC)) == datetime(
        2026, 3, 3, 6, 0, tzinfo=UTC
    )
    # Summer time (UTC+2) from 29 March.
    assert NIGHT.end_after(datetime(2026, 4, 1, 22, 0, tzinfo=UTC)) == datetime(
        2026, 4, 2, 5, 0, tzinfo=UTC
    )
    day = QuietHours(time(12, 0), time(13, 0))
    assert day.contains(datetime(2026, 3, 2, 12, 30, tzinfo=UTC))
    assert not day.contains(datetime(2026, 3, 2, 13, 0, tzinfo=UTC))


def test_quiet_hours_hold_everything_for_one_summary_per_destination() -> None:
    failure, billing = route(), route(pipeline="billing")
    stale = route("stale", index=1)  # same destination as orders' failure alert
    fatigue = policy(failure, billing, stale, quiet=NIGHT)
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    assert fatigue.occur(failure, night) == []
    assert fatigue.occur(failure, night + timedelta(minutes=5)) == []
    assert fatigue.occur(stale, night + timedelta(minutes=6), subject="inbox") == []
    # Opened and recovered in the night: folded into the summary.
    assert fatigue.occur(billing, night + timedelta(hours=1)) == []
    assert fatigue.recover(billing, night + timedelta(hours=2)) == []
    end = datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
    assert fatigue.next_due(night + timedelta(hours=3)) == end
    assert run_until(fatigue, end - timedelta(seconds=1)) == []
    sent = run_until(fatigue, end)
    assert sorted((m.kind, m.destination, len(m.incidents)) for m in sent) == [
        ("summary", "webhook:billing", 1),
        ("summary", "webhook:orders", 2),
    ]
    by_destination = {m.destination: m for m in sent}
    [closed] = by_destination["webhook:billing"].incidents
    assert (closed["status"], closed["count"]) == ("closed", 1)
    counts = sorted((i["key"], i["new"]) for i in by_destination["webhook:orders"].incidents)
    assert counts == [("orders/failure", 2), ("orders/stale/inbox", 1)]
    assert [i.key for i in fatigue.open_incidents()] == ["orders/failure", "orders/stale/inbox"]
    # After the summary, the keys cool down as after any message.
    assert fatigue.occur(failure, end + timedelta(minutes=1)) == []
    [later] = run_until(fatigue, end + timedelta(seconds=COOLDOWN))
    assert summary(later) == ("followup", 1, 3)


def test_a_key_told_just_before_the_quiet_hours_is_not_in_the_summary_early() -> None:
    r = route()
    short = QuietHours(time(12, 10), time(12, 20))  # UTC, 10 minutes
    fatigue = policy(r, quiet=short)
    assert len(fatigue.occur(r, at(0))) == 1
    fatigue.occur(r, at(60))
    assert [m.kind for m in run_until(fatigue, at(WINDOW))] == ["followup"]
    assert fatigue.occur(r, at(15 * 60)) == []  # quiet
    assert run_until(fatigue, at(20 * 60)) == []  # quiet over, but the key cools down
    [later] = run_until(fatigue, at(WINDOW + COOLDOWN))
    assert later.kind == "followup"


def test_incidents_round_trip_and_nothing_is_sent_twice_after_a_restart() -> None:
    r = route()
    fatigue = policy(r)
    fatigue.occur(r, at(0), run_id="r1")
    fatigue.occur(r, at(10), run_id="r2")
    stored = [i.to_json() for i in fatigue.take_changed()]
    assert fatigue.take_changed() == []
    again = policy(r)
    again.load(Incident.from_json(data) for data in stored)
    assert again.occur(r, at(20)) == []  # still in the window: folded
    [follow] = run_until(again, at(WINDOW))
    assert summary(follow) == ("followup", 2, 3)
    assert follow.incidents[0]["run_ids"] == ["r1", "r2"]


def flap(fatigue: Fatigue, r: Route, seconds: float, every: float) -> list[Message]:
    """Failure and success alternating every ``every`` seconds for ``seconds``."""
    sent: list[Message] = []
    for step in range(int(seconds / every)):
        now = at(step * every)
        sent += run_until(fatigue, now)
        if step % 2 == 0:
            sent += fatigue.occur(r, now, run_id=f"run{step}")
        else:
            sent += fatigue.recover(r, now)
    return sent + run_until(fatigue, at(seconds))


def test_a_pipeline_flapping_for_a_day_sends_a_bounded_number_of_messages() -> None:
    day = 86400.0
    r = route()
    fatigue = policy(r)
    sent = flap(fatigue, r, day, every=5)
    # One alert, one follow-up a group window later, then one message per cooldown.
    assert len(sent) <= 2 + day / COOLDOWN
    assert len(sent) <= message_bound(day, WINDOW, COOLDOWN)
    assert len(sent) == 49
    assert sent[0].kind == "alert"
    assert {m.kind for m in sent[1:]} <= {"followup", "recovery", "alert"}
    # Once it stops, what is held is told within a cooldown: every failure, folded.
    sent += run_until(fatigue, at(day + COOLDOWN))
    assert len(sent) == 50
    assert sum(i["new"] for m in sent for i in m.incidents) == 8640


Op = tuple[float, str]


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.5, max_value=4000), min_size=1, max_size=120),
    kinds=st.lists(st.sampled_from(["occur", "occur", "recover"]), min_size=120, max_size=120),
    window=st.sampled_from([0.0, 60.0, 300.0, 900.0]),
    cooldown=st.sampled_from([30.0, 600.0, 1800.0]),
    quiet=st.booleans(),
)
def test_any_history_keeps_the_spacing_and_the_bound(
    gaps: list[float], kinds: list[str], window: float, cooldown: float, quiet: bool
) -> None:
    r = route(group_window=window, cooldown=cooldown)
    fatigue = policy(r, quiet=QuietHours(time(13, 0), time(14, 0)) if quiet else None)
    sent: list[Message] = []
    elapsed = 0.0
    for gap, kind in zip(gaps, kinds, strict=False):
        elapsed += gap
        now = at(elapsed)
        sent += run_until(fatigue, now)
        if kind == "occur":
            sent += fatigue.occur(r, now)
        else:
            sent += fatigue.recover(r, now)
    end = elapsed + 2 * cooldown + 86400
    sent += run_until(fatigue, at(end))
    times = [m.at for m in sent]
    assert times == sorted(times)
    gaps_sent = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    short = min(window, cooldown)
    assert all(g >= short - 1e-6 for g in gaps_sent)
    # Of two gaps in a row, one is at least a cooldown.
    assert all(max(a, b) >= cooldown - 1e-6 for a, b in itertools.pairwise(gaps_sent))
    assert len(sent) <= message_bound(end, window, cooldown)
    # Nothing is left untold once things settle: every occurrence is in some message.
    told = sum(i["new"] for m in sent for i in m.incidents)
    assert told == kinds[: len(gaps)].count("occur")


def test_the_worked_timeline_of_the_docs() -> None:
    """docs/alerts.md, "The fatigue rules": the same steps, the same messages."""
    r = route()
    fatigue = policy(r)

    def clock(hhmm: str) -> datetime:
        hours, minutes = map(int, hhmm.split(":"))
        return T0.replace(hour=hours, minute=minutes)

    told: list[tuple[str, str, int, int]] = []

    def note(messages: list[Message]) -> None:
        for m in messages:
            [incident] = m.incidents
            told.append((m.at.strftime("%H:%M"), m.kind, incident["new"], incident["count"]))

    steps = [("12:00", "fail"), ("12:01", "fail"), ("12:03", "fail")]
    steps += [(f"12:{m}", "fail") for m in ("10", "15", "20", "25", "30")]
    steps += [("12:40", "ok"), ("13:06", "fail")]
    for hhmm, what in steps:
        note(run_until(fatigue, clock(hhmm)))
        if what == "fail":
            note(fatigue.occur(r, clock(hhmm)))
        else:
            note(fatigue.recover(r, clock(hhmm)))
    note(run_until(fatigue, clock("14:00")))
    assert told == [
        ("12:00", "alert", 1, 1),
        ("12:05", "followup", 2, 3),
        ("12:35", "followup", 5, 8),
        ("13:05", "recovery", 0, 8),
        ("13:35", "alert", 1, 1),
    ]


def test_an_incident_whose_alert_is_gone_is_closed_without_a_message() -> None:
    kept, removed = route(), route("duration", index=1)
    fatigue = policy(kept, removed)
    fatigue.occur(kept, at(0))
    fatigue.occur(removed, at(0))
    fatigue.set_routes([kept])
    assert run_until(fatigue, at(60)) == []
    assert [i.key for i in fatigue.open_incidents()] == ["orders/failure"]
    [gone] = [i for i in fatigue.take_changed() if not i.open]
    assert gone.detail == "closed without a message: its alert is gone"
