"""Alerts end to end: a real service on both stores, a fake clock, and real receivers on
127.0.0.1 (an HTTP server for webhook and Slack, aiosmtpd for email)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from helpers import wait_for

from reactor.api.server import serve_http
from reactor.clock import FakeClock
from reactor.events import Event, new_id
from reactor.store import RunRecord, Store

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

FLAKY = """
name: orders
params:
  code: {{type: integer, default: 1}}
alerts:
  - on: failure
    {destination}
tasks:
  - id: load
    shell: "exit {{{{ params.code }}}}"
"""


class Inbox:
    """What a receiver got, in order, and a way to wait for the n-th item."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = anyio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, count: int, timeout: float = 10.0) -> list[Any]:
        with anyio.fail_after(timeout):
            while len(self.items) < count:
                await self._changed.wait()
        return self.items


@asynccontextmanager
async def http_receiver(*, fail_first: int = 0) -> AsyncIterator[tuple[str, Inbox]]:
    """A JSON receiver on 127.0.0.1; answers 500 to the first ``fail_first`` requests."""
    inbox = Inbox()
    app = FastAPI()
    failures = [fail_first]

    @app.post("/{path:path}")
    async def receive(path: str, request: Request) -> Response:
        if failures[0] > 0:
            failures[0] -= 1
            return JSONResponse({"error": "try later"}, status_code=500)
        inbox.add({"path": path, "body": await request.json()})
        return JSONResponse({"ok": True})

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, app, "127.0.0.1", 0)
        yield f"http://127.0.0.1:{port}", inbox
        tg.cancel_scope.cancel()


class _Mailbox:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.inbox.add((envelope.mail_from, envelope.rcpt_tos, envelope.content))
        return "250 OK"


@asynccontextmanager
async def smtp_receiver() -> AsyncIterator[tuple[int, Inbox]]:
    """aiosmtpd on 127.0.0.1, in this event loop."""
    inbox = Inbox()
    handler = _Mailbox(inbox)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, inbox
    finally:
        server.close()
        await server.wait_closed()


def settings_file(folder: Path, text: str) -> None:
    (folder / "reactor.yaml").write_text(text, encoding="utf-8")


async def open_incidents(store: Store) -> list[dict[str, Any]]:
    return await store.incidents(include_closed=False, limit=100)


async def stored_count(store: Store, count: int) -> dict[str, Any]:
    """Wait until the one open incident is stored with ``count`` occurrences."""

    async def stored() -> bool:
        found = await open_incidents(store)
        return len(found) == 1 and found[0]["count"] == count

    await wait_for(stored, message=f"an open incident with count {count}")
    [incident] = await open_incidents(store)
    return incident


async def none_open(store: Store) -> None:
    async def closed() -> bool:
        return await open_incidents(store) == []

    await wait_for(closed, message="no open incident")


async def test_a_failing_pipeline_alerts_once_folds_then_recovers(
    write_pipeline: Callable[[str, str], Path],
    pipelines_dir: Path,
    start_reactor: Any,
    store: Store,
) -> None:
    async with http_receiver(fail_first=1) as (url, inbox):
        settings_file(pipelines_dir, "alerting: {base_url: 'https://reactor.example'}\n")
        write_pipeline("orders.yaml", FLAKY.format(destination=f"webhook: {url}/alerts"))
        clock = FakeClock(START)
        async with start_reactor(clock=clock) as reactor:
            first = await reactor.wait_run((await reactor.run_now("orders")).id)
            assert first.status == "failed"
            # The first try gets a 500: it is sent again a second later.
            await clock.wait_for_sleepers(3)
            clock.advance(1)
            [alert] = await inbox.wait(1)
            body = alert["body"]
            assert alert["path"] == "alerts"
            assert (body["message"], body["kind"], body["pipeline"]) == (
                "alert",
                "failure",
                "orders",
            )
            assert (body["count"], body["new"], body["status"]) == (1, 1, "open")
            assert body["run_ids"] == [first.id]
            assert body["links"] == [f"https://reactor.example/runs/{first.id}"]
            assert body["first"] == body["last"] == first.ended_at.isoformat()
            assert body["text"].startswith("ALERT orders: runs failed - ")

            # Two more failures within the group window: folded, nothing sent yet.
            more = [await reactor.run_now("orders") for _ in range(2)]
            for run in more:
                assert (await reactor.wait_run(run.id)).status == "failed"
            incident = await stored_count(store, 3)
            assert incident["id"] == body["incident"]
            assert len(inbox.items) == 1

            clock.advance(300 - 1)  # the window ends
            [_, follow] = await inbox.wait(2)
            assert (follow["body"]["message"], follow["body"]["new"]) == ("followup", 2)
            assert follow["body"]["count"] == 3
            # The two runs ran side by side: they ended in either order.
            run_ids = follow["body"]["run_ids"]
            assert (run_ids[0], sorted(run_ids[1:])) == (first.id, sorted(r.id for r in more))

            ok = await reactor.wait_run((await reactor.run_now("orders", {"code": 0})).id)
            assert ok.status == "succeeded"
            clock.advance(1800)  # the recovery waits for the cooldown after the follow-up
            [_, _, recovery] = await inbox.wait(3)
            assert recovery["body"]["message"] == "recovery"
            assert recovery["body"]["status"] == "closed"
            assert recovery["body"]["recovered_at"] == ok.ended_at.isoformat()
            assert recovery["body"]["text"].startswith("RECOVERED orders: runs failed, 3 time")
            await none_open(store)
            assert reactor.alerter.failed == 0
            assert len(inbox.items) == 3


async def test_slack_gets_text_and_blocks_from_an_env_url(
    write_pipeline: Callable[[str, str], Path],
    start_reactor: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with http_receiver() as (url, inbox):
        monkeypatch.setenv("ALERTS_SLACK_URL", f"{url}/slack")
        write_pipeline("orders.yaml", FLAKY.format(destination="slack: env:ALERTS_SLACK_URL"))
        async with start_reactor(clock=FakeClock(START)) as reactor:
            run = await reactor.wait_run((await reactor.run_now("orders")).id)
            [posted] = await inbox.wait(1)
    assert posted["path"] == "slack"
    body = posted["body"]
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("ALERT orders: runs failed - ")
    assert body["blocks"][0] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": body["text"]},
    }
    assert run.status == "failed"


async def test_email_goes_through_smtp(
    write_pipeline: Callable[[str, str], Path],
    pipelines_dir: Path,
    start_reactor: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with smtp_receiver() as (port, inbox):
        settings_file(
            pipelines_dir,
            f"alerting:\n  smtp: {{host: 127.0.0.1, port: {port}, from: reactor@example.com}}\n",
        )
        write_pipeline(
            "orders.yaml",
            FLAKY.format(destination="email: {to: [ops@example.com], subject: '[etl]'}"),
        )
        async with start_reactor(clock=FakeClock(START)) as reactor:
            run = await reactor.wait_run((await reactor.run_now("orders")).id)
            [(sender, recipients, content)] = await inbox.wait(1)
    assert (sender, recipients) == ("reactor@example.com", ["ops@example.com"])
    mail = message_from_bytes(content)
    assert mail["Subject"].startswith("[etl] ALERT orders: runs failed - ")
    assert mail["To"] == "ops@example.com"
    assert run.id in mail.get_payload()


async def test_open_incidents_survive_a_restart_and_nothing_is_sent_twice(
    write_pipeline: Callable[[str, str], Path],
    start_reactor: Any,
    store: Store,
) -> None:
    async with http_receiver() as (url, inbox):
        write_pipeline("orders.yaml", FLAKY.format(destination=f"webhook: {url}/alerts"))
        clock = FakeClock(START)
        async with start_reactor(clock=clock) as reactor:
            first = await reactor.wait_run((await reactor.run_now("orders")).id)
            await inbox.wait(1)
        [stored] = await open_incidents(store)
        assert (stored["count"], stored["messages"]) == (1, 1)

        clock.advance(60)  # still in the group window
        async with (
            start_reactor(clock=clock, http=("127.0.0.1", 0)) as reactor,
            httpx.AsyncClient(base_url=reactor_url(reactor)) as api,
        ):
            listed = (await api.get("/api/incidents")).json()["incidents"]
            assert [(i["id"], i["key"], i["status"]) for i in listed] == [
                (stored["id"], "orders/failure", "open")
            ]
            assert listed[0]["run_ids"] == [first.id]
            second = await reactor.wait_run((await reactor.run_now("orders")).id)
            assert second.status == "failed"
            assert len(inbox.items) == 1  # folded: the restart did not send it again
            clock.advance(240)
            [_, follow] = await inbox.wait(2)
            assert (follow["body"]["message"], follow["body"]["count"]) == ("followup", 2)
            ok = await reactor.wait_run((await reactor.run_now("orders", {"code": 0})).id)
            assert ok.status == "succeeded"
            clock.advance(1800)
            await inbox.wait(3)
            await none_open(store)
            assert (await api.get("/api/incidents")).json() == {"incidents": []}
            closed = (await api.get("/api/incidents", params={"all": "true"})).json()
            assert [(i["id"], i["status"]) for i in closed["incidents"]] == [
                (stored["id"], "closed")
            ]
            bad = await api.get("/api/incidents", params={"limit": 0})
            assert bad.status_code == 400 or bad.status_code == 422


def reactor_url(reactor: Any) -> str:
    return f"http://127.0.0.1:{reactor.http_port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_receiver_that_is_down_is_retried_then_given_up_without_harm(
    write_pipeline: Callable[[str, str], Path],
    start_reactor: Any,
    store: Store,
) -> None:
    write_pipeline(
        "orders.yaml",
        FLAKY.format(destination=f"webhook: http://127.0.0.1:{free_port()}/nobody"),
    )
    clock = FakeClock(START)
    async with start_reactor(clock=clock) as reactor:
        run = await reactor.wait_run((await reactor.run_now("orders")).id)
        for delay in (1, 4, 16):
            # heartbeat, the alert loop, and the delivery waiting to try again
            await clock.wait_for_sleepers(3)
            clock.advance(delay)
        with anyio.fail_after(10):
            while reactor.alerter.failed == 0:
                await clock.wait_for_sleepers(2)
                await anyio.lowlevel.checkpoint()
        assert reactor.alerter.delivered == 0
        # The service goes on: another run, and the incident is still recorded.
        again = await reactor.wait_run((await reactor.run_now("orders")).id)
        incident = await stored_count(store, 2)
        assert incident["run_ids"] == [run.id, again.id]


def alert_of(item: dict[str, Any]) -> tuple[str, str, str | None]:
    body = item["body"]
    return body["message"], body["key"], body["status"]


async def test_a_run_running_too_long_alerts_and_its_end_recovers(
    write_pipeline: Callable[[str, str], Path], start_reactor: Any, recorder: Any
) -> None:
    async with http_receiver() as (url, inbox):
        write_pipeline(
            "slow.yaml",
            f"""
            name: slow
            alerts:
              - {{on: duration, over: 10m, webhook: "{url}/a"}}
            tasks:
              - id: wait
                shell: "sleep 60"
            """,
        )
        clock = FakeClock(START)
        async with start_reactor(clock=clock) as reactor:
            run = await reactor.run_now("slow")
            await wait_for(
                lambda: any(change == (run.id, "slow", "running") for change in recorder.changes),
                message="the run to start",
            )
            clock.advance(599)
            clock.advance(5)  # the next look at running runs
            [alert] = await inbox.wait(1)
            assert alert_of(alert) == ("alert", "slow/duration", "open")
            assert alert["body"]["run_ids"] == [run.id]
            await reactor.cancel_run(run.id, actor="test")
            await reactor.wait_run(run.id)
            clock.advance(300)  # the recovery came within the group window
            [_, recovery] = await inbox.wait(2)
            assert alert_of(recovery) == ("recovery", "slow/duration", "closed")


async def test_a_trigger_that_goes_quiet_is_stale_until_it_fires(
    write_pipeline: Callable[[str, str], Path], start_reactor: Any
) -> None:
    async with http_receiver() as (url, inbox):
        write_pipeline(
            "orders.yaml",
            f"""
            name: orders
            triggers:
              - {{on: event, type: orders.created}}
            alerts:
              - {{on: stale, over: 1h, webhook: "{url}/a"}}
            tasks:
              - id: show
                shell: "echo new order"
            """,
        )
        clock = FakeClock(START)
        async with start_reactor(clock=clock) as reactor:
            clock.advance(3600)
            clock.advance(5)
            [alert] = await inbox.wait(1)
            assert alert_of(alert) == ("alert", "orders/stale/event", "open")
            assert "not fired since the service started" in alert["body"]["detail"]
            published = await reactor.publish(Event("orders.created", "shop", {}, id="o1"))
            await reactor.wait_run(published.run_ids[0])
            clock.advance(300)
            [_, recovery] = await inbox.wait(2)
            assert alert_of(recovery) == ("recovery", "orders/stale/event", "closed")


async def test_a_correlation_that_times_out_alerts(
    write_pipeline: Callable[[str, str], Path], start_reactor: Any
) -> None:
    async with http_receiver() as (url, inbox):
        write_pipeline(
            "ship.yaml",
            f"""
            name: ship
            triggers:
              - on: event
                id: paid_and_packed
                all_of: [{{type: orders.paid}}, {{type: orders.packed}}]
                key: "{{{{ event.data.order_id }}}}"
                within: 1m
            alerts:
              - {{on: correlation_timeout, webhook: "{url}/a"}}
            tasks:
              - id: ship
                shell: "echo ship"
            """,
        )
        clock = FakeClock(START)
        async with start_reactor(clock=clock) as reactor:
            await reactor.publish(Event("orders.paid", "shop", {"order_id": "A-1"}, id="p1"))
            clock.advance(61)
            [alert] = await inbox.wait(1)
    assert alert_of(alert) == ("alert", "ship/correlation_timeout/paid_and_packed", "open")
    assert alert["body"]["detail"] == "key 'A-1' waited in vain for orders.packed"


async def test_a_failing_sensor_alerts_and_recovers(
    write_pipeline: Callable[[str, str], Path], pipelines_dir: Path, start_reactor: Any
) -> None:
    async with http_receiver() as (url, inbox):
        write_pipeline(
            "inbox.yaml",
            f"""
            name: inbox
            triggers:
              - {{on: file, path: ./landing, pattern: "*.csv"}}
            alerts:
              - {{on: sensor_unhealthy, webhook: "{url}/a", group_window: 0}}
            tasks:
              - id: show
                shell: "echo file"
            """,
        )
        clock = FakeClock(START)
        async with start_reactor(clock=clock) as reactor:
            await wait_for(
                lambda: reactor.sensor_health()["inbox/file"].state == "failing",
                message="the sensor to fail",
            )
            clock.advance(5)
            [alert] = await inbox.wait(1)
            assert alert_of(alert) == ("alert", "inbox/sensor_unhealthy/file", "open")
            assert "does not exist" in alert["body"]["detail"]
            (pipelines_dir / "landing").mkdir()
            clock.advance(1)
            await wait_for(
                lambda: reactor.sensor_health()["inbox/file"].state == "watching",
                message="the sensor to watch",
            )
            clock.advance(1800)  # the cooldown after the alert
            [_, recovery] = await inbox.wait(2)
            assert alert_of(recovery) == ("recovery", "inbox/sensor_unhealthy/file", "closed")


async def test_a_run_far_outside_the_recorded_durations_is_an_anomaly(
    write_pipeline: Callable[[str, str], Path],
    pipelines_dir: Path,
    start_reactor: Any,
    store: Store,
) -> None:
    # Five earlier runs of about a minute, as a store holds them.
    for index in range(5):
        run_id = new_id()
        began = START - timedelta(hours=index + 1)
        await store.create_run(
            RunRecord(
                run_id, f"nightly/manual@{run_id}", "nightly", "v0", "queued", {}, None, [], began
            )
        )
        await store.set_run_status(run_id, "running", at=began)
        await store.set_run_status(run_id, "succeeded", at=began + timedelta(seconds=60 + index))
    async with http_receiver() as (url, inbox):
        settings_file(pipelines_dir, "alerting:\n  anomaly: {runs: 5}\n")
        write_pipeline(
            "nightly.yaml",
            f"""
            name: nightly
            alerts:
              - {{on: anomaly, webhook: "{url}/a"}}
            tasks:
              - id: work
                shell: "echo done"
            """,
        )
        async with start_reactor(clock=FakeClock(START)) as reactor:
            # Fake time stands still during the run: it takes 0 s, far from ~62 s.
            run = await reactor.wait_run((await reactor.run_now("nightly")).id)
            [alert] = await inbox.wait(1)
    assert alert_of(alert) == ("alert", "nightly/anomaly/duration", "open")
    assert alert["body"]["run_ids"] == [run.id]
    assert alert["body"]["detail"].startswith(
        f"run {run.id} ran 0ms, far shorter than usual: median 62s of the last 5 runs"
    )


async def test_an_event_rate_drop_is_found_in_the_stored_events_at_a_start(
    write_pipeline: Callable[[str, str], Path],
    pipelines_dir: Path,
    start_reactor: Any,
    store: Store,
) -> None:
    # Eight hours of about 20 events an hour, then an hour with one: as a store holds them
    # (decided, recorded with their outcome), before this start.
    for hour in range(3, 12):
        for n in range(20 if hour < 11 else 1):
            received = START.replace(hour=hour, minute=n)
            event = Event("orders.created", "shop", {"n": n}, id=f"{hour}-{n}")
            await store.ingest(event, received)
            record = {"trigger": "orders/event", "pipeline": "orders", "fired": False}
            await store.record_outcome(event, [record], [], received)
    async with http_receiver() as (url, inbox):
        settings_file(pipelines_dir, "alerting:\n  anomaly: {rate_windows: 8}\n")
        write_pipeline(
            "orders.yaml",
            f"""
            name: orders
            triggers:
              - {{on: event, type: orders.created}}
            alerts:
              - {{on: anomaly, webhook: "{url}/a"}}
            tasks:
              - id: show
                shell: "echo order"
            """,
        )
        async with start_reactor(clock=FakeClock(START.replace(hour=12))):
            [alert] = await inbox.wait(1)
    assert alert_of(alert) == ("alert", "orders/anomaly/event.rate", "open")
    assert alert["body"]["detail"] == (
        "1 events in the last window, usually 20 (median of the last 7 windows; robust z -9.5)"
    )


async def test_the_store_keeps_incidents_replaced_by_id_and_filtered_by_status(
    store: Store,
) -> None:
    def incident(number: int, *, closed: bool = False, count: int = 1) -> dict[str, Any]:
        opened = START + timedelta(minutes=number)
        return {
            "id": f"inc{number}",
            "route": "orders#alerts[0]",
            "pipeline": "orders",
            "kind": "failure",
            "subject": None,
            "opened_at": opened.isoformat(),
            "last_at": opened.isoformat(),
            "closed_at": opened.isoformat() if closed else None,
            "count": count,
        }

    await store.save_incidents([])
    await store.save_incidents([incident(1), incident(2), incident(3, closed=True)])
    await store.save_incidents([incident(1, count=5)])
    open_ones = await store.incidents(include_closed=False, limit=10)
    assert [(i["id"], i["count"]) for i in open_ones] == [("inc2", 1), ("inc1", 5)]
    everything = await store.incidents(include_closed=True, limit=10)
    assert [i["id"] for i in everything] == ["inc3", "inc2", "inc1"]
    assert [i["id"] for i in await store.incidents(include_closed=True, limit=1)] == ["inc3"]
    await store.save_incidents([incident(2, closed=True)])
    assert [i["id"] for i in await store.incidents(include_closed=False, limit=10)] == ["inc1"]


async def test_quiet_hours_hold_messages_for_one_summary(
    write_pipeline: Callable[[str, str], Path],
    pipelines_dir: Path,
    start_reactor: Any,
    store: Store,
) -> None:
    async with http_receiver() as (url, inbox):
        settings_file(
            pipelines_dir,
            'alerting:\n  quiet_hours: {from: "12:00", to: "13:00", timezone: UTC}\n',
        )
        write_pipeline("orders.yaml", FLAKY.format(destination=f"webhook: {url}/alerts"))
        clock = FakeClock(START)  # 12:00 UTC: quiet
        async with start_reactor(clock=clock) as reactor:
            runs = [await reactor.run_now("orders") for _ in range(2)]
            for run in runs:
                assert (await reactor.wait_run(run.id)).status == "failed"
            await stored_count(store, 2)
            clock.advance(1800)
            assert inbox.items == []
            clock.advance(1800)  # 13:00: the quiet hours end
            [summary] = await inbox.wait(1)
    body = summary["body"]
    assert body["message"] == "summary"
    assert body["text"].startswith("Reactor: held during quiet hours, 1 incident(s):\nALERT")
    [incident] = body["incidents"]
    assert (incident["key"], incident["count"], incident["new"]) == ("orders/failure", 2, 2)
    assert body["sent_at"] == START.replace(hour=13).isoformat()
