"""``on: webhook``: a run when a signed HTTP request arrives at ``POST /hooks/{name}``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

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
from reactor.config import Size
from reactor.errors import ReactorError
from reactor.events import Event, InvalidEvent, new_id
from reactor.specs import (
    HOOK_ATTRIBUTE,
    EventFilter,
    HookRequest,
    HookResult,
    IngressUnavailable,
    TriggerSpec,
)

__all__ = [
    "WebhookReceiver",
    "WebhookTriggerSpec",
    "hook_source",
    "hook_type",
]

#: Headers that carry credentials: never copied into ``event.data.headers``.
_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-hub-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "x-slack-signature",
        "x-reactor-token",
    }
)

_CE_REQUIRED = ("ce-id", "ce-source", "ce-type", "ce-specversion")


def hook_source(name: str) -> str:
    """The CloudEvents ``source`` of the events a hook makes from plain bodies."""
    return f"reactor/hooks/{name}"


def hook_type(name: str) -> str:
    """The type of the events a hook makes from plain (non-CloudEvents) bodies."""
    return f"webhook.{name}"


def _media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _is_supported(media_type: str) -> bool:
    return (
        _is_json(media_type)
        or media_type == "application/x-www-form-urlencoded"
        or media_type.startswith("text/")
        or media_type == "application/xml"
        or (media_type.startswith("application/") and media_type.endswith("+xml"))
    )


class WebhookTriggerSpec(TriggerSpec):
    """``on: webhook``: ``name`` (``POST /hooks/NAME``), ``signature``, ``secret``, ``max_body``.

    ``signature`` is required unless ``public: true``, so an open hook is a choice;
    ``secret`` is ``env:NAME`` or ``file:PATH`` (relative to the pipeline file).
    """

    on: Literal["webhook"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    signature: SignatureSpec | None = None
    secret: str | None = None
    public: bool = False
    #: The largest body accepted; unset: ``limits.webhook_max_body`` of ``reactor.yaml``.
    max_body: Size | None = None
    #: Glob on the event type: a CloudEvents request's own type, else ``webhook.<name>``.
    type: str = Field("*", min_length=1)

    @field_validator("secret")
    @classmethod
    def _secret_reference(cls, value: str | None) -> str | None:
        if value is None:
            return None
        kind, _, ref = value.partition(":")
        if kind not in ("env", "file") or not ref.strip():
            raise ValueError(
                "write env:NAME or file:PATH; a secret never sits in the pipeline file itself"
            )
        return value

    @model_validator(mode="after")
    def _signed_or_public(self) -> WebhookTriggerSpec:
        if self.public:
            if self.signature is not None or self.secret is not None:
                raise ValueError("a public hook has no signature: or secret:")
        elif self.signature is None:
            raise ValueError(
                "a webhook needs signature: (github, stripe, slack, token or"
                " {type: hmac, ...}) and secret:, or public: true for a hook anyone may call"
            )
        elif self.secret is None:
            raise ValueError(
                f"signature: {self._signature_name()} needs secret: env:NAME or file:PATH"
            )
        return self

    def _signature_name(self) -> str:
        return self.signature if isinstance(self.signature, str) else "hmac"

    @property
    def hook_name(self) -> str:
        return self.name

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter(self.type)

    def accepts(self, event: Event) -> bool:
        return event.extensions.get(HOOK_ATTRIBUTE) == self.name

    def _secret_path(self, base_dir: Path) -> Path | None:
        if self.secret is None or not self.secret.startswith("file:"):
            return None
        return (base_dir / self.secret.removeprefix("file:").strip()).resolve()

    def ingress_settings(self, base_dir: Path) -> object:
        path = self._secret_path(base_dir)
        secret = str(path) if path is not None else self.secret
        return (self.public, self.signature, secret, self.max_body)

    def open_ingress(
        self, base_dir: Path, env: Mapping[str, str], default_max_body: int
    ) -> WebhookReceiver:
        secret = b""
        if self.secret is not None:
            path = self._secret_path(base_dir)
            if path is None:
                variable = self.secret.removeprefix("env:").strip()
                value = env.get(variable, "")
                if not value:
                    raise IngressUnavailable(
                        "secret", f"hook {self.name!r}: environment variable {variable} is not set"
                    )
                secret = value.encode()
            else:
                try:
                    secret = path.read_bytes().strip()
                except OSError as exc:
                    raise IngressUnavailable(
                        "secret",
                        f"hook {self.name!r}: cannot read secret file {path}: {exc.strerror}",
                    ) from exc
                if not secret:
                    raise IngressUnavailable(
                        "secret", f"hook {self.name!r}: secret file {path} is empty"
                    )
        return WebhookReceiver(self, secret, self.max_body or default_max_body)


def _error(status: int, message: str) -> HookResult:
    return HookResult(status=status, body={"error": message})


class WebhookReceiver:
    """Checks one hook's requests and turns each into one event (verified once, for all)."""

    def __init__(self, spec: WebhookTriggerSpec, secret: bytes, max_body: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.max_body = max_body
        self._secret = secret
        hidden = set(_SECRET_HEADERS)
        if isinstance(spec.signature, HmacSignature):
            hidden.add(spec.signature.header.lower())
        self._hidden = frozenset(hidden)

    def receive(self, request: HookRequest, now: datetime) -> HookResult:
        signature = self.spec.signature
        if signature is not None:
            try:
                verify(signature, self._secret, request.headers, request.body, now)
            except SignatureError as exc:
                return _error(401, str(exc))
            if signature == "slack":
                challenge = slack_challenge(request.body, request.content_type)
                if challenge is not None:
                    return HookResult(status=200, body={"challenge": challenge})
        try:
            event = self._event(request, now)
        except _Unsupported as exc:
            return _error(415, str(exc))
        except (BodyError, InvalidEvent) as exc:
            return _error(422, str(exc))
        marked = event.extensions | {HOOK_ATTRIBUTE: self.name}
        return HookResult(
            Event(
                type=event.type,
                source=event.source,
                id=event.id,
                data=event.data,
                time=event.time,
                subject=event.subject,
                datacontenttype=event.datacontenttype,
                extensions=marked,
            )
        )

    def _event(self, request: HookRequest, now: datetime) -> Event:
        headers = request.headers
        media_type = _media_type(request.content_type)
        if "ce-specversion" in headers:
            return self._binary_cloudevent(request, now)
        if media_type == "application/cloudevents+json":
            body = parse_body(request.body, request.content_type)
            if isinstance(body, dict) and "time" not in body:
                body = body | {"time": now.isoformat()}
            return Event.from_cloudevent(body, default_source=hook_source(self.name))
        if media_type == "application/cloudevents-batch+json":
            raise _Unsupported("CloudEvents batch mode is not supported; send one event a request")
        event_id = (
            headers.get("idempotency-key", "").strip()
            or (delivery_id(self.spec.signature, headers) if self.spec.signature else None)
            or new_id()
        )
        return Event(
            type=hook_type(self.name),
            source=hook_source(self.name),
            id=event_id,
            time=now,
            data={
                "body": self._body(request),
                "headers": {k: v for k, v in headers.items() if k not in self._hidden},
                "query": dict(request.query),
            },
        )

    def _body(self, request: HookRequest) -> Any:
        if not request.body:
            return None
        media_type = _media_type(request.content_type)
        if not media_type:
            raise _Unsupported(
                "the request has a body but no Content-Type; send JSON"
                " (application/json), a form or text"
            )
        if not _is_supported(media_type):
            raise _Unsupported(
                f"unsupported content type {media_type!r}; send JSON (application/json),"
                " a form (application/x-www-form-urlencoded) or text"
            )
        return parse_body(request.body, request.content_type)

    def _binary_cloudevent(self, request: HookRequest, now: datetime) -> Event:
        headers = request.headers
        missing = [name for name in _CE_REQUIRED if not headers.get(name, "").strip()]
        if missing:
            raise InvalidEvent(
                "a binary-mode CloudEvent needs the headers "
                + ", ".join(_CE_REQUIRED)
                + "; missing: "
                + ", ".join(missing)
            )
        attributes: dict[str, Any] = {
            name.removeprefix("ce-"): value
            for name, value in headers.items()
            if name.startswith("ce-")
        }
        attributes.setdefault("time", now.isoformat())
        if request.content_type:
            attributes["datacontenttype"] = request.content_type
        attributes["data"] = self._body(request)
        return Event.from_cloudevent(attributes, default_source=hook_source(self.name))


class _Unsupported(ReactorError):
    """The body's content type is not one a hook reads (415)."""
