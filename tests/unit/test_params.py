"""Typed pipeline params: every type, defaults, enums, all problems at once, CLI values."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from reactor.errors import ParamError
from reactor.params import ParamSpec, check_params, parse_cli_value


def one(kind: str, value: Any, **spec: Any) -> Any:
    return check_params({"p": ParamSpec(type=kind, **spec)}, {"p": value})["p"]


def problem(declared: dict[str, ParamSpec], given: dict[str, Any]) -> str:
    with pytest.raises(ParamError) as caught:
        check_params(declared, given)
    return str(caught.value)


def one_problem(kind: str, value: Any, **spec: Any) -> str:
    return problem({"p": ParamSpec(type=kind, **spec)}, {"p": value})


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("string", "eu", "eu"),
        ("string", "", ""),
        ("integer", 5, 5),
        ("integer", "5", 5),
        ("integer", 5.0, 5),
        ("number", 1.5, 1.5),
        ("number", "1.5", 1.5),
        ("number", 2, 2.0),
        ("boolean", True, True),
        ("boolean", "false", False),
        ("boolean", "yes", True),
        ("date", "2026-01-02", "2026-01-02"),
        ("datetime", "2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00"),
        ("datetime", "2026-01-02T03:04:05+02:00", "2026-01-02T03:04:05+02:00"),
        ("list", [1, "a"], [1, "a"]),
        ("list", [], []),
        ("object", {"a": [1]}, {"a": [1]}),
    ],
)
def test_every_type_accepts_its_values(kind: str, value: Any, expected: Any) -> None:
    result = one(kind, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("string", 5, "expected a string, got int 5"),
        ("string", None, "expected a string, got NoneType None"),
        ("string", ["a"], "expected a string, got list ['a']"),
        (
            "integer",
            "x",
            "expected integer, got 'x': Input should be a valid integer,"
            " unable to parse string as an integer",
        ),
        (
            "integer",
            5.5,
            "expected integer, got 5.5: Input should be a valid integer,"
            " got a number with a fractional part",
        ),
        ("integer", True, "expected integer, got boolean True"),
        (
            "number",
            "x",
            "expected number, got 'x': Input should be a valid number,"
            " unable to parse string as a number",
        ),
        ("number", False, "expected number, got boolean False"),
        (
            "boolean",
            "maybe",
            "expected boolean, got 'maybe': Input should be a valid boolean,"
            " unable to interpret input",
        ),
        (
            "date",
            "Jan 2",
            "expected date, got 'Jan 2': Input should be a valid date or datetime,"
            " input is too short",
        ),
        (
            "datetime",
            "soon",
            "expected datetime, got 'soon': Input should be a valid datetime or date,"
            " input is too short",
        ),
        ("list", "a,b", "expected list, got 'a,b': Input should be a valid list"),
        ("object", [1], "expected object, got [1]: Input should be a valid dictionary"),
    ],
)
def test_every_type_rejects_other_values(kind: str, value: Any, message: str) -> None:
    assert one_problem(kind, value) == f"param 'p': {message}"


def test_datetime_without_offset_is_rejected() -> None:
    assert one_problem("datetime", "2026-01-02T03:04:05") == (
        "param 'p': datetime '2026-01-02T03:04:05' needs a UTC offset, e.g. 2026-01-01T06:00:00Z"
    )


def test_the_default_type_is_string() -> None:
    assert ParamSpec().type == "string"
    assert one_problem("string", 1) == "param 'p': expected a string, got int 1"


def test_defaults_fill_in_missing_params() -> None:
    declared = {
        "region": ParamSpec(default="eu"),
        "limit": ParamSpec(type="integer", default="10"),
        "when": ParamSpec(type="date", default="2026-01-01"),
        "optional": ParamSpec(default=None),
    }
    assert check_params(declared, {}) == {
        "region": "eu",
        "limit": 10,
        "when": "2026-01-01",
        "optional": None,
    }
    assert check_params(declared, {"region": "us"})["region"] == "us"


def test_a_param_with_a_default_is_optional_one_without_is_required() -> None:
    assert ParamSpec(default=None).required is False
    assert ParamSpec(default="x").required is False
    assert ParamSpec().required is True


def test_enum_accepts_listed_values() -> None:
    assert one("string", "us", enum=["eu", "us"]) == "us"
    assert one("integer", "2", enum=[1, 2]) == 2


def test_enum_rejects_other_values() -> None:
    assert (
        one_problem("string", "fr", enum=["eu", "us"]) == "param 'p': 'fr' is not one of 'eu', 'us'"
    )
    assert one_problem("integer", 3, enum=[1, 2]) == "param 'p': 3 is not one of 1, 2"


def test_a_default_outside_the_enum_is_a_declaration_error() -> None:
    with pytest.raises(ValidationError) as caught:
        ParamSpec(default="fr", enum=["eu", "us"])
    assert "'fr' is not one of 'eu', 'us'" in str(caught.value)


def test_a_default_of_the_wrong_type_is_a_declaration_error() -> None:
    with pytest.raises(ValidationError) as caught:
        ParamSpec(type="integer", default="ten")
    assert "expected integer, got 'ten'" in str(caught.value)


def test_an_unknown_type_is_a_declaration_error() -> None:
    with pytest.raises(ValidationError) as caught:
        ParamSpec(type="integr")  # type: ignore[arg-type]
    assert "Input should be 'string', 'integer', 'number', 'boolean'" in str(caught.value)


def test_unknown_params_are_rejected_naming_the_declared_ones() -> None:
    declared = {"path": ParamSpec(), "region": ParamSpec(default="eu")}
    assert problem(declared, {"path": "a", "pth": "b"}) == (
        "unknown param 'pth' (declared: path, region)"
    )


def test_unknown_params_when_none_are_declared() -> None:
    assert problem({}, {"x": 1}) == "unknown param 'x' (declared: none declared)"


def test_a_missing_required_param_names_its_type() -> None:
    assert problem({"limit": ParamSpec(type="integer")}, {}) == (
        "param 'limit' is required (integer)"
    )


def test_every_problem_is_reported_at_once() -> None:
    declared = {
        "path": ParamSpec(),
        "limit": ParamSpec(type="integer"),
        "region": ParamSpec(default="eu", enum=["eu", "us"]),
    }
    message = problem(declared, {"extra": 1, "limit": "many", "region": "fr"})
    assert message.split("; ") == [
        "unknown param 'extra' (declared: path, limit, region)",
        "param 'path' is required (string)",
        "param 'limit': expected integer, got 'many': Input should be a valid integer,"
        " unable to parse string as an integer",
        "param 'region': 'fr' is not one of 'eu', 'us'",
    ]


def test_no_params_declared_and_none_given() -> None:
    assert check_params({}, {}) == {}


# --- parse_cli_value -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        (None, "5", "5"),
        ("string", "5", "5"),
        ("string", "[1]", "[1]"),
        ("integer", "5", 5),
        ("number", "1.5", 1.5),
        ("boolean", "true", True),
        ("boolean", "false", False),
        ("boolean", "yes", True),
        ("boolean", "No", False),
        ("list", "[1, 2]", [1, 2]),
        ("object", '{"a": 1}', {"a": 1}),
        ("date", "2026-01-01", "2026-01-01"),
        ("datetime", "2026-01-01T06:00:00Z", "2026-01-01T06:00:00Z"),
    ],
)
def test_parse_cli_value_reads_the_declared_type(
    kind: str | None, text: str, expected: Any
) -> None:
    spec = ParamSpec(type=kind) if kind else None
    assert parse_cli_value(spec, text) == expected


@pytest.mark.parametrize(
    ("kind", "text"), [("integer", "five"), ("list", "a,b"), ("boolean", "maybe")]
)
def test_parse_cli_value_leaves_unreadable_text_for_the_type_check(kind: str, text: str) -> None:
    spec = ParamSpec(type=kind)
    assert parse_cli_value(spec, text) == text
    with pytest.raises(ParamError) as caught:
        check_params({"p": spec}, {"p": text})
    assert str(caught.value).startswith(f"param 'p': expected {kind}, got {text!r}")
