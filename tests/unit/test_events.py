"""Events: the CloudEvents 1.0 structured form, ids and dedupe keys."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from reactor.events import Event, InvalidEvent, content_id, new_id

WHEN = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def parse(body: Any) -> Event:
    return Event.from_cloudevent(body, default_source="reactor/api")


def rejects(body: Any) -> str:
    with pytest.raises(InvalidEvent) as caught:
        parse(body)
    return str(caught.value)


# --- to_cloudevent -------------------------------------------------------------------------------


def test_to_cloudevent_has_every_core_attribute() -> None:
    event = Event("orders.paid", "shop/eu", {"amount": 3}, id="e1", time=WHEN)
    assert event.to_cloudevent() == {
        "specversion": "1.0",
        "id": "e1",
        "source": "shop/eu",
        "type": "orders.paid",
        "time": "2026-03-01T12:30:00+00:00",
        "datacontenttype": "application/json",
        "data": {"amount": 3},
    }


def test_to_cloudevent_adds_subject_and_extensions_only_when_set() -> None:
    event = Event(
        "t", "s", id="e1", time=WHEN, subject="orders-1.csv", extensions={"traceparent": "00-ab"}
    )
    body = event.to_cloudevent()
    assert body["subject"] == "orders-1.csv"
    assert body["traceparent"] == "00-ab"
    assert "subject" not in Event("t", "s").to_cloudevent()


def test_scope_is_the_cloudevent_form() -> None:
    event = Event("t", "s", [1, 2], id="e1", time=WHEN)
    assert event.scope() == event.to_cloudevent()


def test_to_json_is_compact_json_of_the_cloudevent() -> None:
    event = Event("t", "s", {"a": 1}, id="e1", time=WHEN)
    assert json.loads(event.to_json()) == event.to_cloudevent()
    assert " " not in event.to_json()


def test_round_trip_keeps_every_attribute() -> None:
    event = Event(
        "orders.paid",
        "shop/eu",
        {"amount": 3},
        id="e1",
        time=WHEN,
        subject="o-1",
        datacontenttype="application/json",
        extensions={"partitionkey": "eu"},
    )
    assert parse(event.to_cloudevent()) == event


def test_dedupe_key_is_source_and_id() -> None:
    assert Event("t", "shop", id="e1").dedupe_key == ("shop", "e1")


def test_default_time_is_now_in_utc() -> None:
    before = datetime.now(UTC)
    event = Event("t", "s")
    assert before <= event.time <= datetime.now(UTC)
    assert event.time.tzinfo is not None


# --- from_cloudevent: what may be omitted --------------------------------------------------------


def test_only_type_is_required_id_source_specversion_are_filled_in() -> None:
    event = parse({"type": "orders.paid"})
    assert event.type == "orders.paid"
    assert event.source == "reactor/api"
    assert len(event.id) == 32
    assert event.data is None
    assert event.datacontenttype == "application/json"
    assert event.time.tzinfo is not None
    assert event.extensions == {}


def test_two_events_without_ids_get_different_ids() -> None:
    assert parse({"type": "t"}).id != parse({"type": "t"}).id


def test_given_attributes_are_kept() -> None:
    event = parse(
        {
            "specversion": "1.0",
            "type": "orders.paid",
            "id": "abc",
            "source": "shop",
            "subject": "o-1",
            "datacontenttype": "text/plain",
            "time": "2026-03-01T14:30:00+02:00",
            "data": "hello",
        }
    )
    assert (event.id, event.source, event.subject, event.data) == ("abc", "shop", "o-1", "hello")
    assert event.datacontenttype == "text/plain"
    assert event.time == WHEN
    assert event.time.utcoffset() == timedelta(hours=2)


def test_time_with_z_is_utc() -> None:
    assert parse({"type": "t", "time": "2026-03-01T12:30:00Z"}).time == WHEN


def test_null_optional_attributes_count_as_omitted() -> None:
    event = parse({"type": "t", "id": None, "source": None, "time": None, "subject": None})
    assert event.source == "reactor/api"
    assert event.subject is None
    assert event.id


def test_lower_case_extension_attributes_are_kept() -> None:
    event = parse({"type": "t", "traceparent": "00-ab", "ext1": 2})
    assert event.extensions == {"traceparent": "00-ab", "ext1": 2}
    assert event.to_cloudevent()["ext1"] == 2


# --- from_cloudevent: what is refused ------------------------------------------------------------


@pytest.mark.parametrize("body", [[1, 2], "orders.paid", None, 5])
def test_a_body_that_is_not_an_object_is_refused(body: Any) -> None:
    assert rejects(body) == "an event must be a JSON object"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0.3", "specversion '0.3' is not supported; use '1.0'"),
        ("2.0", "specversion '2.0' is not supported; use '1.0'"),
        (1.0, "specversion 1.0 is not supported; use '1.0'"),
    ],
)
def test_other_specversions_are_refused(spec: Any, message: str) -> None:
    assert rejects({"type": "t", "specversion": spec}) == message


@pytest.mark.parametrize("body", [{}, {"type": ""}, {"type": 5}, {"type": None}, {"data": {}}])
def test_type_is_required(body: dict[str, Any]) -> None:
    assert rejects(body) == "'type' is required and must be a non-empty string"


@pytest.mark.parametrize("name", ["id", "source", "subject", "datacontenttype"])
@pytest.mark.parametrize("value", ["", 5, ["x"]])
def test_string_attributes_must_be_non_empty_strings(name: str, value: Any) -> None:
    assert rejects({"type": "t", name: value}) == f"'{name}' must be a non-empty string"


def test_time_without_offset_is_refused() -> None:
    message = rejects({"type": "t", "time": "2026-03-01T12:30:00"})
    assert message == "'time' '2026-03-01T12:30:00' has no UTC offset"


@pytest.mark.parametrize("raw", ["yesterday", "2026-13-01T00:00:00Z", ""])
def test_time_that_is_not_a_timestamp_is_refused(raw: str) -> None:
    assert rejects({"type": "t", "time": raw}) == f"'time' {raw!r} is not an RFC 3339 timestamp"


@pytest.mark.parametrize("name", ["Trace", "trace_parent", "trace-parent", "UPPER", "ümlaut"])
def test_extension_names_must_be_lower_case_letters_and_digits(name: str) -> None:
    message = rejects({"type": "t", name: "x"})
    assert message == f"extension attribute {name!r} must be lower-case letters and digits"


# --- ids -----------------------------------------------------------------------------------------


def test_new_id_is_32_hex_characters_starting_with_the_time_in_ms() -> None:
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert len(value) == 32
    int(value, 16)
    assert before <= int(value[:12], 16) <= after


def test_new_ids_sort_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    start = 1_767_225_600_000_000_000  # 2026-01-01 in ns
    ticks = iter(range(start, start + 10**12, 7 * 10**6))
    monkeypatch.setattr(time, "time_ns", lambda: next(ticks))
    ids = [new_id() for _ in range(50)]
    assert sorted(ids) == ids
    assert len(set(ids)) == 50


def test_new_ids_in_the_same_millisecond_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_767_225_600_000_000_000)
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100


def test_content_id_is_stable_and_depends_on_every_part() -> None:
    first = content_id("/in/orders-1.csv", 120, 1_767_225_600)
    assert first == content_id("/in/orders-1.csv", 120, 1_767_225_600)
    assert len(first) == 32
    assert first != content_id("/in/orders-1.csv", 121, 1_767_225_600)
    assert first != content_id("/in/orders-2.csv", 120, 1_767_225_600)
    # The separator keeps part boundaries: ("ab", "c") is not ("a", "bc").
    assert content_id("ab", "c") != content_id("a", "bc")


def test_content_id_does_not_depend_on_the_process() -> None:
    # A restart must derive the same id for the same file, so the value is fixed.
    assert content_id("a", 1) == "839e11a421d370be28db56fde67e9aad"


def test_event_times_with_other_offsets_compare_as_instants() -> None:
    local = parse({"type": "t", "time": "2026-03-01T07:30:00-05:00"})
    assert local.time == WHEN
    assert local.time.tzinfo == timezone(timedelta(hours=-5))
