"""The alerter's timers (event rates, stale triggers) against loaded pipelines and a fake
clock; the service around it is a plain namespace (these paths touch no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from spec_files import write

from reactor.alerting.alerter import Alerter
from reactor.clock import FakeClock
from reactor.events import Event
from reactor.pipelines import load_folder

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)

ORDERS = """
name: orders
triggers:
  - {on: event, type: orders.created}
alerts:
  - {on: anomaly, webhook: "https://ops.example.com/hooks"}
  - {on: stale, over: 2h, webhook: "https://ops.example.com/hooks"}
tasks:
  - id: show
    shell: echo order
"""


def alerter_for(tmp_path: Path, clock: FakeClock) -> Alerter:
    folder = tmp_path / "pipelines"
    write(folder, "orders.yaml", ORDERS)
    write(folder, "reactor.yaml", "alerting:\n  anomaly: {rate_window: 1h, rate_windows: 8}\n")
    loaded = load_folder(folder)
    assert loaded.problems == []
    service: Any = SimpleNamespace(
        config=loaded.config, pipelines=loaded.pipelines, clock=clock, sensor_health=dict
    )
    alerter = Alerter(service)
    assert alerter.wanted()
    alerter._started_at = clock.now()
    alerter._running = True
    return alerter


def seen(alerter: Alerter, count: int, *, fired: bool = True) -> None:
    record = {"trigger": "orders/event", "pipeline": "orders", "fired": fired}
    for n in range(count):
        alerter.event_decided(Event("orders.created", "shop", {"n": n}), [record])


def test_an_event_rate_far_below_its_usual_level_is_an_anomaly(tmp_path: Path) -> None:
    clock = FakeClock(START)
    alerter = alerter_for(tmp_path, clock)
    assert alerter.check(clock.now()) == []
    messages = []
    # The first window is only partly seen: it does not count. Then 8 usual hours.
    for hour in range(9):
        seen(alerter, 100 + hour % 3)
        clock.advance(3600)
        messages += alerter.check(clock.now())
    assert messages == []
    seen(alerter, 7)  # a quiet hour
    clock.advance(3600)
    [message] = alerter.check(clock.now())
    [incident] = message.incidents
    assert (message.kind, incident["key"]) == ("alert", "orders/anomaly/event.rate")
    assert incident["detail"].startswith("7 events in the last window, usually 101")


def test_a_rate_needs_enough_windows_before_it_says_anything(tmp_path: Path) -> None:
    clock = FakeClock(START)
    alerter = alerter_for(tmp_path, clock)
    alerter.check(clock.now())
    for hour in range(3):
        seen(alerter, 100 if hour < 2 else 0)
        clock.advance(3600)
        assert alerter.check(clock.now()) == []


def test_a_trigger_silent_for_over_is_stale_once_then_recovers(tmp_path: Path) -> None:
    clock = FakeClock(START)
    alerter = alerter_for(tmp_path, clock)
    clock.advance(7200)
    assert alerter.check(clock.now()) == []  # exactly 2h: not over yet
    clock.advance(1)
    [message] = alerter.check(clock.now())
    assert message.incidents[0]["key"] == "orders/stale/event"
    clock.advance(60)
    assert alerter.check(clock.now()) == []  # one occurrence per silence
    seen(alerter, 1, fired=False)  # matched but did not fire: still stale
    assert [i.key for i in alerter.fatigue.open_incidents()] == ["orders/stale/event"]
    seen(alerter, 1)
    assert alerter.fatigue.open_incidents()[0].recovered_at == START + timedelta(seconds=7261)
