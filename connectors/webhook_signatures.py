"""Webhook request checks: provider signatures, replay windows, delivery ids and body parsing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, NoReturn, TypeAlias
from urllib.parse import parse_qsl

from pydantic import Field, model_validator

from reactor.durations import Duration
from reactor.errors import ReactorError
from reactor.specs import Spec

__all__ = [
    "BodyError",
    "HmacSignature",
    "SignatureError",
    "SignatureSpec",
    "delivery_id",
    "parse_body",
    "slack_challenge",
    "verify",
]

#: Header names are HTTP tokens (RFC 9110 section 5.1).
_HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"

#: Unix seconds as providers send them; bounded so the value always fits a float exactly.
_UNIX_SECONDS = re.compile(r"[0-9]{1,15}")

#: What the providers' own libraries use when they check a timestamp.
_PROVIDER_TOLERANCE = 300.0

#: Python's default limit on converting digits to an int (``sys.get_int_max_str_digits``).
_MAX_INT_DIGITS = 4300

_HASHES: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}


class SignatureError(ReactorError):
    """A webhook request's signature or timestamp is missing, wrong or too old."""


class BodyError(ReactorError):
    """A webhook body cannot be parsed as its content type says."""


class HmacSignature(Spec):
    """``signature: {type: hmac, header: ...}``: an HMAC of the body in a header of choice."""

    type: Literal["hmac"]
    header: str = Field(pattern=_HEADER_NAME)
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = Field(None, pattern=_HEADER_NAME)
    tolerance: Duration = _PROVIDER_TOLERANCE
    signed: Literal["body", "timestamp.body"] = "body"

    @model_validator(mode="after")
    def _timestamp_to_sign(self) -> HmacSignature:
        if self.signed == "timestamp.body" and self.timestamp_header is None:
            raise ValueError("signed: timestamp.body needs a timestamp_header")
        return self


SignatureSpec: TypeAlias = Literal["github", "stripe", "slack", "token"] | HmacSignature

_GITHUB = HmacSignature(type="hmac", header="X-Hub-Signature-256", prefix="sha256=")
_GITHUB_DELIVERY = "x-github-delivery"
_STRIPE_HEADER = "Stripe-Signature"
_SLACK_SIGNATURE = "X-Slack-Signature"
_SLACK_TIMESTAMP = "X-Slack-Request-Timestamp"
_TOKEN_HEADER = "X-Reactor-Token"


def verify(
    signature: SignatureSpec,
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> None:
    """Return if the request is signed with ``secret``, else raise :class:`SignatureError`.

    ``body`` is the raw body as received, ``now`` an aware datetime (the service's clock).
    """
    if not secret:
        # An empty key signs anything anyone can compute; never accept it.
        raise SignatureError("the hook's secret is empty, so no request can be verified")
    lowered = {name.lower(): value for name, value in headers.items()}
    if signature == "github":
        _verify_hmac(_GITHUB, secret, lowered, body, now)
    elif signature == "stripe":
        _verify_stripe(secret, lowered, body, now)
    elif signature == "slack":
        _verify_slack(secret, lowered, body, now)
    elif signature == "token":
        _verify_token(secret, lowered)
    else:
        _verify_hmac(signature, secret, lowered, body, now)


def delivery_id(signature: SignatureSpec, headers: Mapping[str, str]) -> str | None:
    """The provider's id of this delivery, the same on each retry of it, if it sends one."""
    if signature != "github":
        return None
    lowered = {name.lower(): value for name, value in headers.items()}
    value = lowered.get(_GITHUB_DELIVERY, "").strip()
    return value or None


def slack_challenge(body: bytes, content_type: str) -> str | None:
    """The ``challenge`` of Slack's ``url_verification`` request, which must be echoed."""
    if not _is_json(_media_type(content_type)):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("type") != "url_verification":
        return None
    challenge = data.get("challenge")
    return challenge if isinstance(challenge, str) else None


def parse_body(body: bytes, content_type: str) -> Any:
    """The body as data: JSON parsed, a form as a dict of str, anything else as text.

    A form whose only field is ``payload`` (Slack interactivity) has that field parsed as
    JSON. A field given twice keeps its last value.
    """
    media_type = _media_type(content_type)
    if _is_json(media_type):
        return _parse_json(body, "the body")
    if media_type == "application/x-www-form-urlencoded":
        pairs = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        fields = dict(pairs)
        if len(pairs) == 1 and "payload" in fields:
            return {"payload": _parse_json(fields["payload"].encode(), "the payload field")}
        return fields
    return body.decode("utf-8", errors="replace")


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class _Rejected(Exception):
    """A value the JSON parser hands over that we refuse; the message says why."""


def _reject_constant(name: str) -> NoReturn:
    raise _Rejected(f"{name} is not a JSON number")


def _parse_int(text: str) -> int:
    # Past this Python refuses the conversion with a message about its own settings.
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise _Rejected(f"a number in it has more than {_MAX_INT_DIGITS} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e999 would otherwise come through as infinity, which JSON cannot write back.
        raise _Rejected(f"the number {text[:20]} is too large")
    return value


def _parse_json(data: bytes, what: str) -> Any:
    if not data.strip():
        raise BodyError(f"{what} is not valid JSON: it is empty")
    try:
        return json.loads(
            data, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float
        )
    except _Rejected as exc:
        raise BodyError(f"{what} is not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BodyError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise BodyError(f"{what} is not valid JSON: it is not UTF-8 text") from exc
    except RecursionError:
        raise BodyError(f"{what} is not valid JSON: it is nested too deeply") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower(), "").strip()
    if not value:
        raise SignatureError(f"the request has no {name} header")
    return value


def _unix_seconds(text: str, what: str) -> float:
    if not _UNIX_SECONDS.fullmatch(text):
        raise SignatureError(f"{what} is not a whole number of seconds since 1970")
    return float(text)


def _check_age(sent: float, now: datetime, tolerance: float, where: str) -> None:
    # Whole seconds, as the providers send them and as Stripe's own library compares.
    age = math.floor(now.timestamp()) - sent
    if abs(age) <= tolerance:
        return
    when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
    raise SignatureError(
        f"the request timestamp ({where}) is {when}, outside the {tolerance:g} s tolerance"
    )


def _mac(secret: bytes, algorithm: str, message: bytes) -> bytes:
    return hmac.new(secret, message, _HASHES[algorithm]).digest()


def _decode_digest(text: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        # UnicodeEncodeError is a ValueError too.
        return None


def _verify_hmac(
    spec: HmacSignature,
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> None:
    value = _header(headers, spec.header)
    sent: float | None = None
    stamp = ""
    if spec.timestamp_header is not None:
        stamp = _header(headers, spec.timestamp_header)
        sent = _unix_seconds(stamp, f"the {spec.timestamp_header} header")
    message = f"{stamp}.".encode() + body if spec.signed == "timestamp.body" else body
    _compare_digest_header(spec, value, _mac(secret, spec.algorithm, message))
    if sent is not None:
        _check_age(sent, now, spec.tolerance, spec.timestamp_header or "")


def _compare_digest_header(spec: HmacSignature, value: str, expected: bytes) -> None:
    shape = (
        f"the {spec.header} header must be {spec.prefix}<{spec.encoding} {spec.algorithm} digest>"
    )
    if not value.startswith(spec.prefix):
        raise SignatureError(shape)
    digest = _decode_digest(value[len(spec.prefix) :], spec.encoding)
    if digest is None or len(digest) != len(expected):
        raise SignatureError(shape)
    if not hmac.compare_digest(digest, expected):
        raise SignatureError(
            f"the signature in the {spec.header} header does not match the request"
        )


def _verify_stripe(secret: bytes, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
    value = _header(headers, _STRIPE_HEADER)
    stamps: list[str] = []
    signatures: list[str] = []
    for item in value.split(","):
        key, equals, text = item.partition("=")
        if not equals:
            continue
        if key.strip() == "t":
            stamps.append(text.strip())
        elif key.strip() == "v1":
            signatures.append(text.strip())
    if not stamps:
        raise SignatureError(f"the {_STRIPE_HEADER} header has no t= timestamp")
    if not signatures:
        raise SignatureError(f"the {_STRIPE_HEADER} header has no v1= signature")
    # Stripe's own libraries read the first t=.
    sent = _unix_seconds(stamps[0], f"the t= timestamp of the {_STRIPE_HEADER} header")
    expected = _mac(secret, "sha256", f"{stamps[0]}.".encode() + body)
    matched = False
    for candidate in signatures:
        digest = _decode_digest(candidate, "hex")
        # Every candidate is compared, so the time taken does not say which one matched.
        if digest is not None and hmac.compare_digest(digest, expected):
            matched = True
    if not matched:
        raise SignatureError(f"no v1 signature in the {_STRIPE_HEADER} header matches the request")
    _check_age(sent, now, _PROVIDER_TOLERANCE, f"{_STRIPE_HEADER} t=")


_SLACK = HmacSignature(type="hmac", header=_SLACK_SIGNATURE, prefix="v0=")


def _verify_slack(secret: bytes, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
    stamp = _header(headers, _SLACK_TIMESTAMP)
    value = _header(headers, _SLACK_SIGNATURE)
    sent = _unix_seconds(stamp, f"the {_SLACK_TIMESTAMP} header")
    expected = _mac(secret, "sha256", f"v0:{stamp}:".encode() + body)
    _compare_digest_header(_SLACK, value, expected)
    _check_age(sent, now, _PROVIDER_TOLERANCE, _SLACK_TIMESTAMP)


def _verify_token(secret: bytes, headers: Mapping[str, str]) -> None:
    tokens: list[str] = []
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, *rest = authorization.split(None, 1)
        if scheme.lower() == "bearer" and rest:
            tokens.append(rest[0].strip())
    if custom := headers.get(_TOKEN_HEADER.lower(), "").strip():
        tokens.append(custom)
    if not tokens:
        if authorization:
            raise SignatureError("the Authorization header must be 'Bearer <token>'")
        raise SignatureError(
            f"the request has no Authorization: Bearer <token> header (or {_TOKEN_HEADER} header)"
        )
    matched = False
    for token in tokens:
        if hmac.compare_digest(token.encode("utf-8", errors="surrogatepass"), secret):
            matched = True
    if not matched:
        raise SignatureError("the token does not match the hook's secret")
