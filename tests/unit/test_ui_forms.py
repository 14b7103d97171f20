"""Form fields generated from typed params, and the typed values read back from a post."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import urlencode

import pytest

from reactor.params import ParamSpec, check_params
from reactor.ui.forms import Field, FormError, fields_for, parse_form, read_params


def spec(**fields: object) -> ParamSpec:
    return ParamSpec.model_validate(fields)


def one(**fields: object) -> Field:
    [field] = fields_for({"p": spec(**fields)})
    return field


PARAMS = {
    "name": spec(type="string", default="world"),
    "count": spec(type="integer", default=3),
    "ratio": spec(type="number", default=0.5),
    "loud": spec(type="boolean", default=False),
    "day": spec(type="date", default="2026-01-01"),
    "at": spec(type="datetime", default="2026-01-01T06:00:00+00:00"),
    "regions": spec(type="list", default=["eu", "us"]),
    "options": spec(type="object", default={"deep": True}),
    "size": spec(type="string", enum=["small", "large"], default="small"),
    "level": spec(type="integer", enum=[1, 2, 3], default=1),
}


def form(**values: str | list[str]) -> dict[str, list[str]]:
    return {f"param.{k}": v if isinstance(v, list) else [v] for k, v in values.items()}


# fields_for


def test_every_param_type_gets_its_input_and_default() -> None:
    fields = {f.name: f for f in fields_for(PARAMS)}
    assert list(fields) == list(PARAMS)  # the pipeline's order
    shown = {name: (f.input, f.value, f.step) for name, f in fields.items()}
    assert shown == {
        "name": ("text", "world", None),
        "count": ("number", "3", "1"),
        "ratio": ("number", "0.5", "any"),
        "loud": ("checkbox", "", None),
        "day": ("date", "2026-01-01", None),
        "at": ("datetime", "2026-01-01T06:00:00+00:00", None),
        "regions": ("json", json.dumps(["eu", "us"], indent=2), None),
        "options": ("json", json.dumps({"deep": True}, indent=2), None),
        "size": ("select", "small", None),
        "level": ("select", "1", None),
    }
    assert fields["size"].choices == ["small", "large"]
    assert fields["level"].choices == ["1", "2", "3"]  # the options' text is their JSON
    assert fields["count"].form_name == "param.count"
    assert fields["count"].spec is PARAMS["count"]


def test_a_true_boolean_default_is_checked() -> None:
    assert (one(type="boolean", default=True).input, one(type="boolean", default=True).value) == (
        "checkbox",
        "true",
    )


@pytest.mark.parametrize(
    "kind", ["string", "integer", "number", "boolean", "date", "datetime", "list", "object"]
)
def test_a_required_param_starts_empty(kind: str) -> None:
    field = one(type=kind)
    assert field.spec.required
    assert field.value == ""


def test_a_null_default_starts_empty() -> None:
    assert one(type="integer", default=None).value == ""
    assert one(type="list", default=None).value == ""


def test_a_datetime_default_is_shown_in_utc() -> None:
    # The input is a datetime-local (no offset) the form says is UTC; it shows 19 characters.
    field = one(type="datetime", default="2026-01-01T06:00:00+02:00")
    assert field.value[:19] == "2026-01-01T04:00:00"
    # Submitted unchanged, the same moment comes back.
    read = read_params({"p": field.spec}, form(p=field.value[:19]))
    assert datetime.fromisoformat(read["p"]) == datetime.fromisoformat(field.spec.default)


# parse_form


def test_a_body_is_read_as_lists_of_values() -> None:
    body = urlencode([("param.loud", "false"), ("param.loud", "true"), ("param.name", "")])
    assert parse_form(body.encode()) == {"param.loud": ["false", "true"], "param.name": [""]}
    assert parse_form(b"") == {}
    assert parse_form(b"param.name=caf%C3%A9+au+lait") == {"param.name": ["café au lait"]}


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(FormError, match=r"^the form is not UTF-8$"):
        parse_form(b"param.name=\xff\xfe")


# read_params


def test_values_are_typed() -> None:
    read = read_params(
        PARAMS,
        form(
            name="you",
            count="42",
            ratio="2.25",
            loud=["false", "true"],
            day="2026-03-04",
            at="2026-03-04T05:06:07",
            regions='["apac"]',
            options='{"deep": false, "n": [1, 2]}',
            size="large",
            level="3",
        ),
    )
    assert read == {
        "name": "you",
        "count": 42,
        "ratio": 2.25,
        "loud": True,
        "day": "2026-03-04",
        "at": "2026-03-04T05:06:07+00:00",
        "regions": ["apac"],
        "options": {"deep": False, "n": [1, 2]},
        "size": "large",
        "level": 3,
    }
    # What the form gives, the service accepts as is.
    assert check_params(PARAMS, read) == read


def test_empty_fields_mean_the_default() -> None:
    empty = form(**dict.fromkeys(PARAMS, ""))
    assert read_params(PARAMS, empty) == {}
    assert read_params(PARAMS, {}) == {}
    assert check_params(PARAMS, read_params(PARAMS, empty))["count"] == 3


def test_a_required_string_may_be_sent_empty() -> None:
    assert read_params({"who": spec(type="string")}, form(who="")) == {"who": ""}


def test_the_checkbox_pair_sends_false_unless_checked() -> None:
    params = {"loud": spec(type="boolean", default=True)}
    assert read_params(params, form(loud=["false"])) == {"loud": False}
    assert read_params(params, form(loud=["false", "true"])) == {"loud": True}
    assert read_params(params, form(loud=["on"])) == {"loud": True}


def test_a_datetime_with_an_offset_keeps_it() -> None:
    params = {"at": spec(type="datetime")}
    assert read_params(params, form(at="2026-03-04T05:06:07+02:00")) == {
        "at": "2026-03-04T05:06:07+02:00"
    }
    assert read_params(params, form(at="2026-03-04T05:06")) == {"at": "2026-03-04T05:06:00+00:00"}


@pytest.mark.parametrize(
    ("params", "values", "message"),
    [
        ({"count": spec(type="integer")}, {"count": "4.5"}, "count: '4.5' is not a whole number"),
        ({"count": spec(type="integer")}, {"count": "ten"}, "count: 'ten' is not a whole number"),
        ({"ratio": spec(type="number")}, {"ratio": "half"}, "ratio: 'half' is not a number"),
        (
            {"at": spec(type="datetime")},
            {"at": "tomorrow"},
            "at: 'tomorrow' is not a date and time",
        ),
        (
            {"regions": spec(type="list")},
            {"regions": "[eu"},
            "regions: not JSON (Expecting value at line 1)",
        ),
        (
            {"options": spec(type="object")},
            {"options": '{"a": 1,\n}'},
            "options: not JSON (Expecting property name enclosed in double quotes at line 2)",
        ),
        (
            {"level": spec(type="integer", enum=[1, 2])},
            {"level": "high"},
            "level: 'high' is not one of 1, 2",
        ),
    ],
)
def test_bad_values_are_refused_with_the_field_named(
    params: dict[str, ParamSpec], values: dict[str, str], message: str
) -> None:
    with pytest.raises(FormError) as caught:
        read_params(params, form(**values))
    assert str(caught.value) == message


def test_every_bad_field_is_reported_at_once() -> None:
    params = {"a": spec(type="integer"), "b": spec(type="number"), "c": spec(type="string")}
    with pytest.raises(FormError) as caught:
        read_params(params, form(a="x", b="y", c="fine"))
    assert str(caught.value) == "a: 'x' is not a whole number; b: 'y' is not a number"


@pytest.mark.parametrize(
    ("kind", "choices"),
    [
        ("date", ["2026-01-01", "2026-02-01"]),
        ("datetime", ["2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+01:00"]),
        ("boolean", [True]),
        ("number", [0.5, 1.5]),
        ("list", [["a"], ["a", "b"]]),
    ],
)
def test_each_choice_of_an_enum_reads_back_as_itself(kind: str, choices: list[object]) -> None:
    params = {"p": spec(type=kind, enum=choices)}
    [field] = fields_for(params)
    assert field.input == "select"
    for text, value in zip(field.choices, params["p"].enum or [], strict=True):
        read = read_params(params, form(p=text))
        assert read == {"p": value}
        assert check_params(params, read) == read
