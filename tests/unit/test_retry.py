"""Retry policy: delays (fixed, exponential, capped, jittered) and which failures are retried."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from reactor.errors import ExpressionError
from reactor.retry import Failure, RetryPolicy
from reactor.specs import RetryOnSpec, RetrySpec, TaskSpec

NOTHING_TO_RETRY = (
    "retry_on names nothing to retry; remove it or list exit codes,"
    " exception types, timeout, or give an expression"
)


def policy(retries: Any = None, retry_on: Any = None) -> RetryPolicy:
    """A policy from what a user would write under ``retries:`` and ``retry_on:``."""
    return RetryPolicy(
        None if retries is None else RetrySpec.model_validate(retries),
        None if retry_on is None else RetryOnSpec.model_validate(retry_on),
    )


def messages(caught: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[Any, ...], str]]:
    return [(err["loc"], err["msg"]) for err in caught.value.errors()]


FAILED = Failure("failed", "exit code 1", exit_code=1)
TIMED_OUT = Failure("timed_out", "took longer than 10s")
LOOKUP = Failure(
    "failed",
    "KeyError: 'id'",
    exceptions=("KeyError", "builtins.KeyError", "LookupError", "builtins.LookupError"),
)


# --- delays --------------------------------------------------------------------------------------


def test_a_fixed_delay_is_the_same_after_every_attempt() -> None:
    fixed = policy({"max": 5, "initial": "2s"})
    assert [fixed.delay(n) for n in range(1, 6)] == [2.0] * 5


def test_the_default_delay_is_one_second_fixed() -> None:
    assert [policy({"max": 3}).delay(n) for n in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert [policy().delay(n) for n in (1, 2)] == [1.0, 1.0]


def test_an_exponential_delay_doubles_after_each_attempt() -> None:
    doubling = policy({"max": 5, "backoff": "exponential", "initial": "500ms"})
    assert [doubling.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_an_exponential_delay_stops_growing_at_max_delay() -> None:
    capped = policy({"max": 6, "backoff": "exponential", "initial": 1, "max_delay": "5s"})
    assert [capped.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_max_delay_equal_to_initial_keeps_every_delay_the_same() -> None:
    flat = policy({"max": 4, "backoff": "exponential", "initial": 3, "max_delay": 3})
    assert [flat.delay(n) for n in range(1, 5)] == [3.0] * 4


@pytest.mark.parametrize("attempt", [61, 62, 1000, 10**6, 10**100])
def test_huge_attempt_numbers_do_not_overflow(attempt: int) -> None:
    capped = policy({"max": 1000, "backoff": "exponential", "initial": 1, "max_delay": "1h"})
    assert capped.delay(attempt) == 3600.0
    uncapped = policy({"max": 1000, "backoff": "exponential", "initial": 1})
    delay = uncapped.delay(attempt)
    assert math.isfinite(delay)
    assert delay >= uncapped.delay(40) >= 3600.0 * 24 * 365 * 1000


@pytest.mark.parametrize(("rand", "share"), [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)])
def test_jitter_draws_between_half_and_all_of_the_delay(rand: float, share: float) -> None:
    jittered = policy({"max": 5, "backoff": "exponential", "initial": 2, "jitter": True})
    assert jittered.delay(1, rand=lambda: rand) == 2.0 * share
    assert jittered.delay(3, rand=lambda: rand) == 8.0 * share


def test_jitter_applies_to_the_capped_delay() -> None:
    jittered = policy(
        {"max": 9, "backoff": "exponential", "initial": 1, "max_delay": 10, "jitter": True}
    )
    assert jittered.delay(9, rand=lambda: 0.0) == 5.0
    assert jittered.delay(9, rand=lambda: 1.0) == 10.0


def test_without_jitter_the_random_source_is_not_used() -> None:
    def never() -> float:
        raise AssertionError("rand was called without jitter")

    assert policy({"max": 2, "initial": 4}).delay(2, rand=never) == 4.0


def test_jitter_by_default_stays_within_its_bounds() -> None:
    jittered = policy({"max": 3, "initial": 10, "jitter": True})
    assert all(5.0 <= jittered.delay(1) <= 10.0 for _ in range(200))


# --- how many retries ----------------------------------------------------------------------------


def test_retries_stop_after_max_more_attempts() -> None:
    three = policy({"max": 3})
    assert three.max == 3
    assert [three.retries(FAILED, n, {}) for n in range(1, 6)] == [True, True, True, False, False]


def test_no_retries_spec_means_no_retry() -> None:
    none = policy()
    assert none.max == 0
    assert none.retries(FAILED, 1, {}) is False
    assert policy({"max": 0}).retries(TIMED_OUT, 1, {}) is False


def test_without_retry_on_every_failure_is_retried() -> None:
    any_failure = policy({"max": 1})
    assert any_failure.retries(FAILED, 1, {})
    assert any_failure.retries(TIMED_OUT, 1, {})
    assert any_failure.retries(LOOKUP, 1, {})


def test_a_permanent_failure_is_never_retried() -> None:
    permanent = Failure("failed", "output over 1MB", exit_code=1, permanent=True)
    assert policy({"max": 5}).retries(permanent, 1, {}) is False
    assert policy({"max": 5}, [1]).retries(permanent, 1, {}) is False
    assert policy({"max": 5}, "true").retries(permanent, 1, {}) is False


# --- retry_on ------------------------------------------------------------------------------------


def test_the_list_shorthand_sorts_codes_names_and_timeout() -> None:
    spec = RetryOnSpec.model_validate([75, "ConnectionError", "timeout", 1, "http.HTTPError"])
    assert spec == RetryOnSpec(
        exit_codes=[75, 1], exceptions=["ConnectionError", "http.HTTPError"], timeout=True
    )


def test_a_single_exit_code_is_a_list_of_one() -> None:
    assert RetryOnSpec.model_validate(75) == RetryOnSpec(exit_codes=[75])


def test_a_string_is_an_expression() -> None:
    assert RetryOnSpec.model_validate("attempt < 3") == RetryOnSpec(when="attempt < 3")


def test_exit_codes_in_the_list_are_retried_and_others_are_not() -> None:
    on_codes = policy({"max": 2}, [75, 1])
    assert on_codes.retries(FAILED, 1, {})
    assert on_codes.retries(Failure("failed", "exit code 75", exit_code=75), 1, {})
    assert not on_codes.retries(Failure("failed", "exit code 2", exit_code=2), 1, {})
    assert not on_codes.retries(TIMED_OUT, 1, {})
    assert not on_codes.retries(LOOKUP, 1, {})


def test_exception_names_match_the_class_or_any_base_short_or_qualified() -> None:
    assert policy({"max": 1}, ["KeyError"]).retries(LOOKUP, 1, {})
    assert policy({"max": 1}, ["LookupError"]).retries(LOOKUP, 1, {})
    assert policy({"max": 1}, ["builtins.LookupError"]).retries(LOOKUP, 1, {})
    assert not policy({"max": 1}, ["ValueError"]).retries(LOOKUP, 1, {})
    assert not policy({"max": 1}, ["ValueError"]).retries(FAILED, 1, {})


def test_timeout_in_the_list_retries_timed_out_attempts_only() -> None:
    on_timeout = policy({"max": 1}, ["timeout"])
    assert on_timeout.retries(TIMED_OUT, 1, {})
    assert not on_timeout.retries(FAILED, 1, {})
    assert not policy({"max": 1}, [1]).retries(TIMED_OUT, 1, {})


def test_the_mapping_form_matches_any_of_its_parts() -> None:
    either = policy(
        {"max": 1}, {"exit_codes": [3], "exceptions": ["KeyError"], "when": "error == 'flaky'"}
    )
    assert either.retries(Failure("failed", "x", exit_code=3), 1, {})
    assert either.retries(LOOKUP, 1, {})
    assert either.retries(Failure("failed", "flaky"), 1, {})
    assert not either.retries(Failure("failed", "solid", exit_code=4), 1, {})
    assert policy({"max": 1}, {"timeout": True}).retries(TIMED_OUT, 1, {})


def test_an_expression_sees_the_failure_the_attempt_and_the_callers_scope() -> None:
    seen = policy(
        {"max": 5},
        "outcome == 'failed' and 'disk' in error and exit_code == 74"
        " and exception == 'OSError' and 'Exception' in exceptions"
        " and attempt == 2 and params.region == 'eu'",
    )
    failure = Failure(
        "failed", "disk full", exit_code=74, exceptions=("OSError", "Exception", "BaseException")
    )
    assert seen.retries(failure, 2, {"params": {"region": "eu"}})
    assert not seen.retries(failure, 3, {"params": {"region": "eu"}})
    assert not seen.retries(failure, 2, {"params": {"region": "us"}})


def test_an_expression_sees_no_exception_when_there_was_none() -> None:
    no_exception = policy({"max": 1}, "exception is none and exceptions == [] and exit_code == 1")
    assert no_exception.retries(FAILED, 1, {})
    assert policy({"max": 1}, "exit_code is none").retries(TIMED_OUT, 1, {})
    assert policy({"max": 1}, "outcome == 'timed_out'").retries(TIMED_OUT, 1, {})


def test_the_failure_wins_over_a_caller_name_it_shadows() -> None:
    shadowed = policy({"max": 5}, "attempt < 3")
    assert shadowed.retries(FAILED, 2, {"attempt": 99})
    assert not shadowed.retries(FAILED, 3, {"attempt": 0})


def test_an_expression_that_fails_to_evaluate_is_an_error_naming_it() -> None:
    broken = policy({"max": 2}, "ghost > 1")
    with pytest.raises(ExpressionError) as caught:
        broken.retries(FAILED, 1, {})
    assert str(caught.value) == "'ghost' is undefined (in 'ghost > 1')"


def test_an_expression_that_does_not_compile_is_an_error_at_retry_on_when() -> None:
    with pytest.raises(ExpressionError) as caught:
        policy({"max": 2}, "exit_code ==")
    assert str(caught.value) == "unexpected 'end of template' (in 'exit_code ==')"
    # The pipeline loader reports it at retry_on: when the expression was written there.
    assert caught.value.loc == ("retry_on", "when")


def test_retry_on_is_not_consulted_once_attempts_are_used_up() -> None:
    # A broken expression cannot fail a task that had no retries left anyway.
    assert policy({"max": 1}, "ghost > 1").retries(FAILED, 2, {}) is False


@pytest.mark.parametrize("empty", [[], {}, {"exit_codes": [], "timeout": False}])
def test_a_retry_on_that_names_nothing_is_an_error(empty: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        RetryOnSpec.model_validate(empty)
    assert messages(caught) == [((), f"Value error, {NOTHING_TO_RETRY}")]


def test_an_empty_expression_is_an_error() -> None:
    with pytest.raises(ValidationError) as caught:
        RetryOnSpec.model_validate("")
    assert messages(caught) == [(("when",), "String should have at least 1 character")]


def test_an_exception_name_must_look_like_a_class_name() -> None:
    with pytest.raises(ValidationError) as caught:
        RetryOnSpec.model_validate(["not a class"])
    assert messages(caught) == [
        (("exceptions", 0), "String should match pattern '^[A-Za-z_][\\w.]*$'")
    ]


def test_retry_on_forbids_unknown_keys() -> None:
    with pytest.raises(ValidationError) as caught:
        RetryOnSpec.model_validate({"exit_code": [1]})
    assert messages(caught) == [(("exit_code",), "Extra inputs are not permitted")]


# --- retries: in a task --------------------------------------------------------------------------


def test_delay_is_accepted_for_initial() -> None:
    assert RetrySpec.model_validate({"max": 2, "delay": "30s"}) == RetrySpec(max=2, initial=30.0)


def test_delay_and_initial_together_are_an_error() -> None:
    with pytest.raises(ValidationError) as caught:
        RetrySpec.model_validate({"max": 2, "delay": "30s", "initial": "10s"})
    assert messages(caught) == [
        ((), "Value error, write initial: or delay: (the same thing), not both")
    ]


def test_max_delay_below_initial_is_an_error() -> None:
    with pytest.raises(ValidationError) as caught:
        RetrySpec.model_validate({"max": 2, "initial": "1m", "max_delay": "30s"})
    assert messages(caught) == [((), "Value error, max_delay must be at least initial")]


def test_a_bad_duration_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError) as caught:
        RetrySpec.model_validate({"max": 2, "initial": "soon"})
    assert messages(caught) == [
        (
            ("initial",),
            "Value error, 'soon' is not a duration; write a number of seconds"
            " or 500ms, 10s, 5m, 1h, 1d",
        )
    ]


@pytest.mark.parametrize(
    ("max_", "message"),
    [
        (-1, "Input should be greater than or equal to 0"),
        (1001, "Input should be less than or equal to 1000"),
    ],
)
def test_max_is_bounded(max_: int, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        RetrySpec.model_validate({"max": max_})
    assert messages(caught) == [(("max",), message)]


def test_retries_as_a_number_is_the_max() -> None:
    task = TaskSpec.model_validate({"id": "load", "retries": 3})
    assert task.retries == RetrySpec(max=3, backoff="fixed", initial=1.0)


def test_retries_as_a_mapping_in_a_task() -> None:
    task = TaskSpec.model_validate(
        {
            "id": "load",
            "retries": {"max": 4, "backoff": "exponential", "delay": "2s", "max_delay": "1m"},
            "retry_on": ["timeout", 75],
        }
    )
    assert task.retries == RetrySpec(
        max=4, backoff="exponential", initial=2.0, max_delay=60.0, jitter=False
    )
    assert task.retry_on == RetryOnSpec(exit_codes=[75], timeout=True)


def test_retries_as_true_is_an_error() -> None:
    with pytest.raises(ValidationError) as caught:
        TaskSpec.model_validate({"id": "load", "retries": True})
    assert messages(caught) == [
        (
            ("retries",),
            "Value error, retries takes a number (retries: 3) or"
            " {max, backoff, initial, max_delay, jitter}, got True",
        )
    ]
