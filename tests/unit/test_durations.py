"""Durations as users write them in pipeline files."""

from __future__ import annotations

from typing import Any

import pytest

from reactor.durations import format_duration, parse_duration

NOT_A_DURATION = "is not a duration; write a number of seconds or 500ms, 10s, 5m, 1h, 1d"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10.0),
        ("0.1s", 0.1),
        (".5s", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("30", 30.0),
        ("2.5", 2.5),
        (" 2 s ", 2.0),
        ("0s", 0.0),
        (7, 7.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parses_every_documented_form(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_rejects_a_negative_number(value: float) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == "a duration cannot be negative"


def test_rejects_negative_text() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("-1s")
    assert str(caught.value) == "a duration cannot be negative"


@pytest.mark.parametrize("value", [True, False])
def test_rejects_a_boolean(value: bool) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == (
        "a duration must be a number of seconds or text like 500ms, 10s, 5m"
    )


@pytest.mark.parametrize("value", ["soon", "10x", "1e3", "", "5 minutes", "1h30m", None, [1]])
def test_rejects_junk_saying_what_is_allowed(value: Any) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == f"{value!r} {NOT_A_DURATION}"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "500ms"), (10, "10s"), (90, "90s"), (300, "5m"), (7200, "2h")],
)
def test_formats_for_people(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
