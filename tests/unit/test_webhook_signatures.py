"""Webhook signatures as each provider documents them, replay windows and body parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from connectors.webhook_signatures import (
    BodyError,
    HmacSignature,
    SignatureError,
    SignatureSpec,
    delivery_id,
    parse_body,
    slack_challenge,
    verify,
)
from reactor.errors import ReactorError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())
SECRET = b"s3cret-for-tests"
BODY = b'{"ref": "refs/heads/main", "amount": 42}'

Headers = dict[str, str]


# The providers' documented algorithms, written here independently of the module.


def github_headers(secret: bytes, body: bytes) -> Headers:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def stripe_header(secret: bytes, body: bytes, t: int) -> str:
    return hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def stripe_headers(secret: bytes, body: bytes, t: int = T) -> Headers:
    return {"Stripe-Signature": f"t={t},v1={stripe_header(secret, body, t)}"}


def slack_headers(secret: bytes, body: bytes, ts: int = T) -> Headers:
    digest = hmac.new(secret, b"v0:%d:" % ts + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def hmac_headers(spec: HmacSignature, secret: bytes, body: bytes, ts: int = T) -> Headers:
    message = f"{ts}.".encode() + body if spec.signed == "timestamp.body" else body
    raw = hmac.new(secret, message, getattr(hashlib, spec.algorithm)).digest()
    text = raw.hex() if spec.encoding == "hex" else base64.b64encode(raw).decode()
    headers = {spec.header: spec.prefix + text}
    if spec.timestamp_header is not None:
        headers[spec.timestamp_header] = str(ts)
    return headers


def rejects(
    spec: SignatureSpec, headers: Headers, body: bytes = BODY, *, secret: bytes = SECRET
) -> str:
    """The message ``verify`` rejects this request with; it never shows the secret."""
    with pytest.raises(SignatureError) as caught:
        verify(spec, secret, headers, body, NOW)
    message = str(caught.value)
    assert secret.decode() not in message
    for good in (github_headers, slack_headers):
        for value in good(secret, body).values():
            assert value.split("=")[-1] not in message
    assert stripe_header(secret, body, T) not in message
    return message


# GitHub


def test_github_known_good_vector_from_its_documentation() -> None:
    # docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation".
    headers = {
        "X-Hub-Signature-256": (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        )
    }
    verify("github", b"It's a Secret to Everybody", headers, b"Hello, World!", NOW)


def test_github_good_signature_passes() -> None:
    verify("github", SECRET, github_headers(SECRET, BODY), BODY, NOW)


def test_github_uppercase_hex_passes() -> None:
    digest = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest().upper()
    verify("github", SECRET, {"X-Hub-Signature-256": f"sha256={digest}"}, BODY, NOW)


GITHUB_MISMATCH = "the signature in the X-Hub-Signature-256 header does not match the request"
GITHUB_SHAPE = "the X-Hub-Signature-256 header must be sha256=<hex sha256 digest>"


def test_github_wrong_secret() -> None:
    assert rejects("github", github_headers(b"other secret", BODY)) == GITHUB_MISMATCH


def test_github_tampered_body() -> None:
    headers = github_headers(SECRET, BODY)
    assert rejects("github", headers, BODY.replace(b"42", b"43")) == GITHUB_MISMATCH


def test_github_missing_header() -> None:
    # The legacy SHA-1 header alone is not enough.
    sha1 = hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()
    message = rejects("github", {"X-Hub-Signature": f"sha1={sha1}"})
    assert message == "the request has no X-Hub-Signature-256 header"


@pytest.mark.parametrize(
    "value",
    [
        "sha1=" + "ab" * 32,
        "ab" * 32,
        "sha256=",
        "sha256=xyz",
        "sha256=" + "ab" * 31,
        "sha256=" + "ab" * 33,
        "sha256=" + "é" * 64,
        "SHA256=" + "ab" * 32,
    ],
)
def test_github_malformed_header(value: str) -> None:
    assert rejects("github", {"X-Hub-Signature-256": value}) == GITHUB_SHAPE


def test_github_empty_header_counts_as_missing() -> None:
    message = rejects("github", {"X-Hub-Signature-256": "  "})
    assert message == "the request has no X-Hub-Signature-256 header"


# Stripe

STRIPE_MISMATCH = "no v1 signature in the Stripe-Signature header matches the request"


def test_stripe_known_good_vector() -> None:
    # Stripe publishes no secret for its example header, so this vector (the secret and
    # payload stripe-python's tests use) was computed once as Stripe documents it:
    # HMAC-SHA256 keyed with the whsec_ secret over "{t}.{payload}", lower-case hex.
    secret = b"whsec_test_secret"
    body = b'{"id": "evt_test_webhook", "object": "event"}'
    header = (
        "t=1492774577,"
        "v1=c137b1b62277d523cf8fed4dfbd0170a9a5b8a380e00cc3711d4bf0652f2ce7a,"
        "v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    )
    now = datetime.fromtimestamp(1492774577 + 5, UTC)
    verify("stripe", secret, {"Stripe-Signature": header}, body, now)


def test_stripe_good_signature_passes() -> None:
    verify("stripe", SECRET, stripe_headers(SECRET, BODY), BODY, NOW)


def test_stripe_any_v1_may_match_and_v0_is_ignored() -> None:
    good = stripe_header(SECRET, BODY, T)
    header = f"t={T}, v1={'00' * 32}, v0={'11' * 32}, v1={good}, scheme=ignored"
    verify("stripe", SECRET, {"Stripe-Signature": header}, BODY, NOW)


def test_stripe_a_matching_v0_does_not_count() -> None:
    good = stripe_header(SECRET, BODY, T)
    message = rejects("stripe", {"Stripe-Signature": f"t={T},v1={'00' * 32},v0={good}"})
    assert message == STRIPE_MISMATCH


def test_stripe_wrong_secret() -> None:
    assert rejects("stripe", stripe_headers(b"whsec_other", BODY)) == STRIPE_MISMATCH


def test_stripe_tampered_body() -> None:
    assert rejects("stripe", stripe_headers(SECRET, BODY), b"{}") == STRIPE_MISMATCH


def test_stripe_signature_is_bound_to_its_timestamp() -> None:
    # A valid v1 moved onto another t= (to beat the replay window) does not verify.
    good = stripe_header(SECRET, BODY, T - 1000)
    assert rejects("stripe", {"Stripe-Signature": f"t={T},v1={good}"}) == STRIPE_MISMATCH


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("v1=" + "ab" * 32, "the Stripe-Signature header has no t= timestamp"),
        (f"t={T}", "the Stripe-Signature header has no v1= signature"),
        (f"t={T},v0={'ab' * 32}", "the Stripe-Signature header has no v1= signature"),
        ("garbage", "the Stripe-Signature header has no t= timestamp"),
        (
            f"t=soon,v1={'ab' * 32}",
            "the t= timestamp of the Stripe-Signature header is not a whole number of "
            "seconds since 1970",
        ),
        (
            f"t=-{T},v1={'ab' * 32}",
            "the t= timestamp of the Stripe-Signature header is not a whole number of "
            "seconds since 1970",
        ),
        (f"t={T},v1=not-hex", STRIPE_MISMATCH),
    ],
)
def test_stripe_malformed_header(header: str, message: str) -> None:
    assert rejects("stripe", {"Stripe-Signature": header}) == message


def test_stripe_missing_header() -> None:
    assert rejects("stripe", {}) == "the request has no Stripe-Signature header"


@pytest.mark.parametrize(
    ("age", "message"),
    [
        (301, "is 301 s old, outside the 300 s tolerance"),
        (86400, "is 86400 s old, outside the 300 s tolerance"),
        (-301, "is 301 s in the future, outside the 300 s tolerance"),
    ],
)
def test_stripe_timestamp_outside_tolerance(age: int, message: str) -> None:
    got = rejects("stripe", stripe_headers(SECRET, BODY, T - age))
    assert got == f"the request timestamp (Stripe-Signature t=) {message}"


@pytest.mark.parametrize("age", [300, -300, 0])
def test_stripe_timestamp_at_the_tolerance_passes(age: int) -> None:
    verify("stripe", SECRET, stripe_headers(SECRET, BODY, T - age), BODY, NOW)


# Slack

SLACK_MISMATCH = "the signature in the X-Slack-Signature header does not match the request"

# api.slack.com, "Verifying requests from Slack": the slash command example.
SLACK_DOC_SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TS = 1531420618
SLACK_DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slack_known_good_vector_from_its_documentation() -> None:
    headers = {
        "X-Slack-Request-Timestamp": str(SLACK_DOC_TS),
        "X-Slack-Signature": SLACK_DOC_SIGNATURE,
    }
    now = datetime.fromtimestamp(SLACK_DOC_TS + 60, UTC)
    verify("slack", SLACK_DOC_SECRET, headers, SLACK_DOC_BODY, now)
    assert parse_body(SLACK_DOC_BODY, "application/x-www-form-urlencoded")["command"] == (
        "/webhook-collect"
    )


def test_slack_good_signature_passes() -> None:
    verify("slack", SECRET, slack_headers(SECRET, BODY), BODY, NOW)


def test_slack_wrong_secret() -> None:
    assert rejects("slack", slack_headers(b"other", BODY)) == SLACK_MISMATCH


def test_slack_tampered_body() -> None:
    assert rejects("slack", slack_headers(SECRET, BODY), BODY + b" ") == SLACK_MISMATCH


def test_slack_signature_is_bound_to_its_timestamp() -> None:
    headers = slack_headers(SECRET, BODY, T - 1000)
    headers["X-Slack-Request-Timestamp"] = str(T)
    assert rejects("slack", headers) == SLACK_MISMATCH


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("X-Slack-Request-Timestamp", "the request has no X-Slack-Request-Timestamp header"),
        ("X-Slack-Signature", "the request has no X-Slack-Signature header"),
    ],
)
def test_slack_missing_header(drop: str, message: str) -> None:
    headers = slack_headers(SECRET, BODY)
    del headers[drop]
    assert rejects("slack", headers) == message


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "X-Slack-Request-Timestamp",
            "12.5",
            "the X-Slack-Request-Timestamp header is not a whole number of seconds since 1970",
        ),
        (
            "X-Slack-Request-Timestamp",
            "1e9",
            "the X-Slack-Request-Timestamp header is not a whole number of seconds since 1970",
        ),
        (
            "X-Slack-Signature",
            "v1=" + "ab" * 32,
            "the X-Slack-Signature header must be v0=<hex sha256 digest>",
        ),
        (
            "X-Slack-Signature",
            "v0=" + base64.b64encode(b"x" * 32).decode(),
            "the X-Slack-Signature header must be v0=<hex sha256 digest>",
        ),
    ],
)
def test_slack_malformed_header(name: str, value: str, message: str) -> None:
    headers = slack_headers(SECRET, BODY)
    headers[name] = value
    assert rejects("slack", headers) == message


@pytest.mark.parametrize(
    ("age", "message"),
    [
        (301, "is 301 s old, outside the 300 s tolerance"),
        (-3600, "is 3600 s in the future, outside the 300 s tolerance"),
    ],
)
def test_slack_timestamp_outside_tolerance(age: int, message: str) -> None:
    got = rejects("slack", slack_headers(SECRET, BODY, T - age))
    assert got == f"the request timestamp (X-Slack-Request-Timestamp) {message}"


def test_slack_tolerance_counts_whole_seconds() -> None:
    headers = slack_headers(SECRET, BODY, T - 300)
    verify("slack", SECRET, headers, BODY, NOW + timedelta(milliseconds=999))
    with pytest.raises(SignatureError) as caught:
        verify("slack", SECRET, headers, BODY, NOW + timedelta(seconds=1))
    assert str(caught.value) == (
        "the request timestamp (X-Slack-Request-Timestamp) is 301 s old, "
        "outside the 300 s tolerance"
    )


# Token

TOKEN = b"tok-123"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer tok-123"},
        {"authorization": "bearer   tok-123"},
        {"Authorization": "BEARER\ttok-123"},
        {"X-Reactor-Token": "tok-123"},
        {"Authorization": "Basic dXNlcjpwYXNz", "X-Reactor-Token": "tok-123"},
        {"Authorization": "Bearer wrong", "X-Reactor-Token": "tok-123"},
    ],
)
def test_token_passes(headers: Headers) -> None:
    verify("token", TOKEN, headers, BODY, NOW)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "Bearer tok-124"}, "the token does not match the hook's secret"),
        ({"Authorization": "Bearer tok-12"}, "the token does not match the hook's secret"),
        ({"X-Reactor-Token": "TOK-123"}, "the token does not match the hook's secret"),
        ({"X-Reactor-Token": "tøk"}, "the token does not match the hook's secret"),
        ({"Authorization": "tok-123"}, "the Authorization header must be 'Bearer <token>'"),
        ({"Authorization": "Bearer"}, "the Authorization header must be 'Bearer <token>'"),
        (
            {"Authorization": "Basic dG9rLTEyMw=="},
            "the Authorization header must be 'Bearer <token>'",
        ),
        (
            {},
            "the request has no Authorization: Bearer <token> header (or X-Reactor-Token header)",
        ),
    ],
)
def test_token_rejected(headers: Headers, message: str) -> None:
    assert rejects("token", headers, secret=TOKEN) == message


# Generic HMAC

BASE64_SHA512 = HmacSignature(
    type="hmac", header="X-Signature", algorithm="sha512", encoding="base64"
)
HEX_SHA1_PREFIXED = HmacSignature(type="hmac", header="X-Sig", algorithm="sha1", prefix="sha1=")
TIMESTAMPED = HmacSignature(
    type="hmac",
    header="X-Signature",
    timestamp_header="X-Timestamp",
    tolerance="1m",
    signed="timestamp.body",
)
TIMESTAMP_NOT_SIGNED = HmacSignature(
    type="hmac", header="X-Signature", timestamp_header="X-Timestamp", tolerance=10
)
ALL_HMAC = [BASE64_SHA512, HEX_SHA1_PREFIXED, TIMESTAMPED, TIMESTAMP_NOT_SIGNED]


@pytest.mark.parametrize("spec", ALL_HMAC)
def test_hmac_good_signature_passes(spec: HmacSignature) -> None:
    verify(spec, SECRET, hmac_headers(spec, SECRET, BODY), BODY, NOW)


@pytest.mark.parametrize("spec", ALL_HMAC)
def test_hmac_wrong_secret_and_tampered_body(spec: HmacSignature) -> None:
    expected = f"the signature in the {spec.header} header does not match the request"
    assert rejects(spec, hmac_headers(spec, b"nope", BODY)) == expected
    assert rejects(spec, hmac_headers(spec, SECRET, BODY), b"") == expected


def test_hmac_timestamp_is_signed_when_configured() -> None:
    headers = hmac_headers(TIMESTAMPED, SECRET, BODY, T - 30)
    headers["X-Timestamp"] = str(T)
    message = rejects(TIMESTAMPED, headers)
    assert message == "the signature in the X-Signature header does not match the request"


@pytest.mark.parametrize(
    ("spec", "header", "message"),
    [
        (
            BASE64_SHA512,
            "X-Signature",
            "the X-Signature header must be <base64 sha512 digest>",
        ),
        (HEX_SHA1_PREFIXED, "X-Sig", "the X-Sig header must be sha1=<hex sha1 digest>"),
    ],
)
def test_hmac_wrong_encoding(spec: HmacSignature, header: str, message: str) -> None:
    other = spec.model_copy(update={"encoding": "hex" if spec.encoding == "base64" else "base64"})
    assert rejects(spec, hmac_headers(other, SECRET, BODY)) == message


def test_hmac_wrong_algorithm() -> None:
    other = BASE64_SHA512.model_copy(update={"algorithm": "sha256"})
    message = rejects(BASE64_SHA512, hmac_headers(other, SECRET, BODY))
    assert message == "the X-Signature header must be <base64 sha512 digest>"


def test_hmac_wrong_prefix() -> None:
    headers = hmac_headers(HEX_SHA1_PREFIXED, SECRET, BODY)
    headers["X-Sig"] = headers["X-Sig"].replace("sha1=", "sha256=")
    assert rejects(HEX_SHA1_PREFIXED, headers) == "the X-Sig header must be sha1=<hex sha1 digest>"


def test_hmac_missing_prefix() -> None:
    headers = hmac_headers(HEX_SHA1_PREFIXED, SECRET, BODY)
    headers["X-Sig"] = headers["X-Sig"].removeprefix("sha1=")
    assert rejects(HEX_SHA1_PREFIXED, headers) == "the X-Sig header must be sha1=<hex sha1 digest>"


def test_hmac_base64_is_strict() -> None:
    headers = hmac_headers(BASE64_SHA512, SECRET, BODY)
    headers["X-Signature"] = headers["X-Signature"].rstrip("=") + "!"
    message = rejects(BASE64_SHA512, headers)
    assert message == "the X-Signature header must be <base64 sha512 digest>"


@pytest.mark.parametrize("spec", [TIMESTAMPED, TIMESTAMP_NOT_SIGNED])
def test_hmac_missing_headers(spec: HmacSignature) -> None:
    headers = hmac_headers(spec, SECRET, BODY)
    assert rejects(spec, {"X-Timestamp": str(T)}) == "the request has no X-Signature header"
    del headers["X-Timestamp"]
    assert rejects(spec, headers) == "the request has no X-Timestamp header"


def test_hmac_malformed_timestamp() -> None:
    headers = hmac_headers(TIMESTAMPED, SECRET, BODY)
    headers["X-Timestamp"] = "2026-03-01T12:00:00Z"
    message = rejects(TIMESTAMPED, headers)
    assert message == "the X-Timestamp header is not a whole number of seconds since 1970"


@pytest.mark.parametrize(
    ("spec", "age", "message"),
    [
        (TIMESTAMPED, 61, "is 61 s old, outside the 60 s tolerance"),
        (TIMESTAMPED, -61, "is 61 s in the future, outside the 60 s tolerance"),
        (TIMESTAMP_NOT_SIGNED, 11, "is 11 s old, outside the 10 s tolerance"),
    ],
)
def test_hmac_timestamp_outside_tolerance(spec: HmacSignature, age: int, message: str) -> None:
    got = rejects(spec, hmac_headers(spec, SECRET, BODY, T - age))
    assert got == f"the request timestamp (X-Timestamp) {message}"


@pytest.mark.parametrize(("spec", "age"), [(TIMESTAMPED, 60), (TIMESTAMP_NOT_SIGNED, -10)])
def test_hmac_timestamp_at_the_tolerance_passes(spec: HmacSignature, age: int) -> None:
    verify(spec, SECRET, hmac_headers(spec, SECRET, BODY, T - age), BODY, NOW)


def test_hmac_without_timestamp_header_never_expires() -> None:
    later = NOW + timedelta(days=3650)
    verify(BASE64_SHA512, SECRET, hmac_headers(BASE64_SHA512, SECRET, BODY), BODY, later)


# Every kind


SPECS: list[SignatureSpec] = ["github", "stripe", "slack", "token", *ALL_HMAC]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_an_empty_secret_verifies_nothing(spec: SignatureSpec) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(spec, b"", {"Authorization": "Bearer "}, BODY, NOW)
    assert str(caught.value) == "the hook's secret is empty, so no request can be verified"


def signed_headers(spec: SignatureSpec, secret: bytes, body: bytes) -> Headers:
    if spec == "github":
        return github_headers(secret, body)
    if spec == "stripe":
        return stripe_headers(secret, body)
    if spec == "slack":
        return slack_headers(secret, body)
    if spec == "token":
        return {"Authorization": "Bearer " + secret.decode()}
    return hmac_headers(spec, secret, body)


CASINGS: list[Callable[[str], str]] = [str.lower, str.upper, str.title, lambda name: name]


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("casing", CASINGS, ids=["lower", "upper", "title", "as-is"])
def test_header_names_are_case_insensitive(
    spec: SignatureSpec, casing: Callable[[str], str]
) -> None:
    headers = {casing(name): value for name, value in signed_headers(spec, SECRET, BODY).items()}
    verify(spec, SECRET, headers, BODY, NOW)


def test_errors_belong_to_the_reactor_tree() -> None:
    assert issubclass(SignatureError, ReactorError)
    assert issubclass(BodyError, ReactorError)


# The spec as a pipeline file holds it


ADAPTER: TypeAdapter[SignatureSpec] = TypeAdapter(SignatureSpec)


@pytest.mark.parametrize("preset", ["github", "stripe", "slack", "token"])
def test_presets_are_read_by_name(preset: str) -> None:
    assert ADAPTER.validate_python(preset) == preset


def test_hmac_is_read_from_a_mapping_with_defaults() -> None:
    spec = ADAPTER.validate_python({"type": "hmac", "header": "X-Signature"})
    assert spec == HmacSignature(
        type="hmac",
        header="X-Signature",
        algorithm="sha256",
        encoding="hex",
        prefix="",
        timestamp_header=None,
        tolerance=300.0,
        signed="body",
    )


def test_hmac_tolerance_is_a_duration() -> None:
    assert TIMESTAMPED.tolerance == 60.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"type": "hmac", "header": "X-Signature", "signed": "timestamp.body"},
            "signed: timestamp.body needs a timestamp_header",
        ),
        ({"type": "hmac", "header": "X Signature"}, "String should match pattern"),
        ({"type": "hmac", "header": ""}, "String should match pattern"),
        ({"type": "hmac", "header": "X-S", "algorithm": "md5"}, "'sha1', 'sha256' or 'sha512'"),
        ({"type": "hmac", "header": "X-S", "encoding": "b32"}, "Input should be 'hex' or 'base64'"),
        ({"type": "hmac", "header": "X-S", "secret": "x"}, "Extra inputs are not permitted"),
        ({"type": "hmac", "header": "X-S", "tolerance": "soon"}, "'soon' is not a duration"),
        ({"type": "hmac"}, "Field required"),
    ],
)
def test_hmac_spec_rejects_bad_config(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        HmacSignature.model_validate(data)


def test_an_unknown_preset_is_rejected() -> None:
    with pytest.raises(ValidationError, match="'github', 'stripe', 'slack' or 'token'"):
        ADAPTER.validate_python("gitlab")


def test_hmac_spec_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        BASE64_SHA512.header = "X-Other"  # type: ignore[misc]


# Delivery ids


def test_github_delivery_id_in_any_case() -> None:
    assert delivery_id("github", {"X-GitHub-Delivery": "72d3162e-cc78"}) == "72d3162e-cc78"
    assert delivery_id("github", {"x-github-delivery": "72d3162e-cc78"}) == "72d3162e-cc78"


def test_github_without_delivery_header_has_no_id() -> None:
    assert delivery_id("github", {}) is None
    assert delivery_id("github", {"X-GitHub-Delivery": " "}) is None


@pytest.mark.parametrize("spec", ["stripe", "slack", "token", *ALL_HMAC], ids=str)
def test_other_kinds_have_no_delivery_id(spec: SignatureSpec) -> None:
    headers = {
        "X-GitHub-Delivery": "72d3162e",
        "X-Slack-Request-Timestamp": str(T),
        "Idempotency-Key": "k1",
        **signed_headers(spec, SECRET, BODY),
    }
    assert delivery_id(spec, headers) is None


# Slack's url_verification


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_slack_challenge_is_found(content_type: str) -> None:
    body = (
        b'{"token": "Jhj5", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3g",'
        b' "type": "url_verification"}'
    )
    assert slack_challenge(body, content_type) == "3eZbrw1aBm2rZgRNFdxV2595E9CY3g"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"type": "event_callback", "challenge": "abc"}', "application/json"),
        (b'{"type": "url_verification", "challenge": 5}', "application/json"),
        (b'{"type": "url_verification"}', "application/json"),
        (b'["url_verification"]', "application/json"),
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"type=url_verification&challenge=abc", "application/x-www-form-urlencoded"),
        (b'{"type": "url_verification", "challenge": "abc"}', "text/plain"),
    ],
)
def test_slack_challenge_is_absent(body: bytes, content_type: str) -> None:
    assert slack_challenge(body, content_type) is None


# Bodies


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.github+json",
        "application/cloudevents+json; charset=UTF-8",
    ],
)
def test_json_bodies_are_parsed(content_type: str) -> None:
    assert parse_body(BODY, content_type) == {"ref": "refs/heads/main", "amount": 42}


def test_json_body_keeps_any_top_level_value() -> None:
    assert parse_body(b' [1, 2.5, "x", null, true] ', "application/json") == [
        1,
        2.5,
        "x",
        None,
        True,
    ]
    assert parse_body(b'\xef\xbb\xbf{"bom": 1}', "application/json") == {"bom": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": }', "Expecting value at line 1 column 7"),
        (b'{"a": 1} x', "Extra data at line 1 column 10"),
        (b'{"a": 1,\n "b" 2}', "Expecting ':' delimiter at line 2 column 6"),
        (b"", "it is empty"),
        (b" \n", "it is empty"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b"[Infinity]", "Infinity is not a JSON number"),
        (b"-Infinity", "-Infinity is not a JSON number"),
        (b"[1e999]", "the number 1e999 is too large"),
        (b"[-1e999]", "the number -1e999 is too large"),
        (b"1" * 5000, "a number in it has more than 4300 digits"),
        (b'{"a": "\xc3\x28"}', "it is not UTF-8 text"),
        (b"[" * 100_000, "it is nested too deeply"),
    ],
)
def test_invalid_json_body(body: bytes, message: str) -> None:
    with pytest.raises(BodyError) as caught:
        parse_body(body, "application/json")
    assert str(caught.value) == f"the body is not valid JSON: {message}"


def test_form_body_is_a_dict_of_text() -> None:
    body = b"text=hello+world&user_name=ro%C3%A9&empty=&flag&text2=%26%3D"
    assert parse_body(body, "application/x-www-form-urlencoded; charset=utf-8") == {
        "text": "hello world",
        "user_name": "roé",
        "empty": "",
        "flag": "",
        "text2": "&=",
    }


def test_form_field_given_twice_keeps_the_last() -> None:
    assert parse_body(b"a=1&a=2", "application/x-www-form-urlencoded") == {"a": "2"}


def test_empty_form_is_an_empty_dict() -> None:
    assert parse_body(b"", "application/x-www-form-urlencoded") == {}


def test_slack_interactivity_payload_is_parsed_as_json() -> None:
    body = (
        b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%7D"
    )
    assert parse_body(body, "application/x-www-form-urlencoded") == {
        "payload": {"type": "block_actions", "user": {"id": "U1"}}
    }


def test_slack_interactivity_payload_that_is_not_json() -> None:
    with pytest.raises(BodyError) as caught:
        parse_body(b"payload=%7Bnope", "application/x-www-form-urlencoded")
    assert str(caught.value) == (
        "the payload field is not valid JSON: Expecting property name enclosed in double "
        "quotes at line 1 column 2"
    )


def test_payload_beside_other_fields_stays_text() -> None:
    body = b"payload=%7Bnope&user=u1"
    assert parse_body(body, "application/x-www-form-urlencoded") == {
        "payload": "{nope",
        "user": "u1",
    }


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        (b"hello", "text/plain", "hello"),
        (b"<a>1</a>", "application/xml", "<a>1</a>"),
        (b'{"a": 1}', "", '{"a": 1}'),
        (b"caf\xc3\xa9 \xff", "text/plain; charset=utf-8", "café \ufffd"),
        (b"{not json", "application/jsonx", "{not json"),
        (b"--b\r\n", "multipart/form-data; boundary=b", "--b\r\n"),
    ],
)
def test_other_bodies_are_text(body: bytes, content_type: str, text: str) -> None:
    assert parse_body(body, content_type) == text


# Properties

KINDS: list[SignatureSpec] = ["github", "stripe", "slack", *ALL_HMAC]


@settings(max_examples=50)
@given(
    kind=st.sampled_from(KINDS),
    signed=st.binary(max_size=64),
    other=st.binary(max_size=64),
)
def test_a_signature_over_one_body_never_verifies_another(
    kind: SignatureSpec, signed: bytes, other: bytes
) -> None:
    headers = signed_headers(kind, SECRET, signed)
    verify(kind, SECRET, headers, signed, NOW)
    if other != signed:
        with pytest.raises(SignatureError, match="match"):
            verify(kind, SECRET, headers, other, NOW)


@settings(max_examples=50)
@given(
    algorithm=st.sampled_from(["sha1", "sha256", "sha512"]),
    encoding=st.sampled_from(["hex", "base64"]),
    prefix=st.sampled_from(["", "sha=", "v1,"]),
    timestamped=st.booleans(),
    secret=st.binary(min_size=1, max_size=40),
    body=st.binary(max_size=64),
)
def test_any_hmac_configuration_verifies_what_it_signs(
    algorithm: str, encoding: str, prefix: str, timestamped: bool, secret: bytes, body: bytes
) -> None:
    spec = HmacSignature.model_validate(
        {
            "type": "hmac",
            "header": "X-Sig",
            "algorithm": algorithm,
            "encoding": encoding,
            "prefix": prefix,
            "timestamp_header": "X-Ts" if timestamped else None,
            "signed": "timestamp.body" if timestamped else "body",
        }
    )
    verify(spec, secret, hmac_headers(spec, secret, body), body, NOW)
    with pytest.raises(SignatureError, match="does not match the request"):
        verify(spec, secret + b"!", hmac_headers(spec, secret, body), body, NOW)
