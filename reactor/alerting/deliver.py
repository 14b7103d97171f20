"""Sending messages: a generic JSON webhook, a Slack incoming webhook, email over SMTP."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import anyio

from reactor.alerting.fatigue import Message
from reactor.alerting.specs import AlertSpec, EmailSpec, SmtpSpec, env_reference
from reactor.errors import ReactorError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DeliveryError",
    "email_message",
    "resolve",
    "send",
    "slack_body",
    "text_of",
    "webhook_body",
]

_TITLES = {
    "failure": "runs failed",
    "recovery": "runs failed",
    "duration": "a run is running too long",
    "stale": "a trigger has not fired",
    "sensor_unhealthy": "a sensor is failing",
    "correlation_timeout": "a correlation timed out",
    "anomaly": "an anomaly",
}


class DeliveryError(ReactorError):
    """A message could not be sent (the receiver refused it, or could not be reached)."""


def resolve(value: str, env: Mapping[str, str], what: str) -> str:
    """``value`` itself, or the environment variable ``env:NAME`` / ``{{ env.NAME }}`` names."""
    variable = env_reference(value)
    if variable is None:
        return value
    if not env.get(variable):
        raise DeliveryError(f"{what} reads environment variable {variable}, which is not set")
    return env[variable]


def _links(incident: Mapping[str, Any], base_url: str | None) -> list[str]:
    if base_url is None:
        return []
    return [f"{base_url.rstrip('/')}/runs/{run_id}" for run_id in incident["run_ids"]]


def _line(kind: str, incident: Mapping[str, Any]) -> str:
    what = _TITLES.get(incident["kind"], incident["kind"])
    where = incident["pipeline"] + (f" ({incident['subject']})" if incident["subject"] else "")
    count, new = incident["count"], incident["new"]
    if incident["status"] == "closed" and incident["recovered_at"]:
        head = f"RECOVERED {where}: {what}, {count} time(s) in all, recovered"
        head += f" at {incident['recovered_at']}"
    elif kind == "alert" and incident["messages"] == 1 and count == 1:
        head = f"ALERT {where}: {what}"
    else:
        head = f"ALERT {where}: {what}, {new} more since the last message ({count} in all)"
    if incident.get("flaps"):
        head += f"; it recovered and failed again {incident['flaps']} time(s) (flapping)"
    if incident["detail"]:
        head += f" - {incident['detail']}"
    if incident["run_ids"]:
        head += f" (last run {incident['run_ids'][-1]})"
    return head


def text_of(message: Message) -> str:
    """The message as plain text: one line per incident (a summary has a heading)."""
    lines = [_line(message.kind, incident) for incident in message.incidents]
    if message.kind == "summary":
        lines.insert(0, f"Reactor: held during quiet hours, {len(lines)} incident(s):")
    return "\n".join(lines)


def webhook_body(message: Message, base_url: str | None) -> dict[str, Any]:
    """The generic JSON body: the message's kind and text, and each incident in full."""
    incidents = [
        {
            "incident": incident["id"],
            "key": incident["key"],
            "kind": incident["kind"],
            "pipeline": incident["pipeline"],
            "subject": incident["subject"],
            "status": incident["status"],
            "count": incident["count"],
            "new": incident["new"],
            "first": incident["opened_at"],
            "last": incident["last_at"],
            "recovered_at": incident["recovered_at"],
            "run_ids": incident["run_ids"],
            "links": _links(incident, base_url),
            "detail": incident["detail"],
            "flaps": incident["flaps"],
        }
        for incident in message.incidents
    ]
    body: dict[str, Any] = {
        "message": message.kind,
        "sent_at": message.at.isoformat(),
        "text": text_of(message),
        "incidents": incidents,
    }
    if len(incidents) == 1:
        body |= incidents[0]
    return body


def slack_body(message: Message, base_url: str | None) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (notifications) and ``blocks``."""
    text = text_of(message)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": line}} for line in text.splitlines()
    ]
    links = [link for incident in message.incidents for link in _links(incident, base_url)]
    if links:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": " ".join(f"<{link}|run>" for link in links[-5:])}
                ],
            }
        )
    return {"text": text, "blocks": blocks}


def email_message(
    message: Message, email: EmailSpec, smtp: SmtpSpec, base_url: str | None
) -> EmailMessage:
    text = text_of(message)
    mail = EmailMessage()
    first = text.splitlines()[0]
    mail["Subject"] = f"{email.subject} {first}" if email.subject else first
    mail["From"] = email.from_ or smtp.from_
    mail["To"] = ", ".join(email.to)
    runs = [
        link
        for incident in message.incidents
        for link in (_links(incident, base_url) or incident["run_ids"])
    ]
    mail.set_content(text + ("\n\nRuns:\n" + "\n".join(runs) if runs else "") + "\n")
    return mail


def _send_mail(mail: EmailMessage, smtp: SmtpSpec, password: str | None) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
        if smtp.starttls:
            client.starttls()
        if smtp.user is not None and password is not None:
            client.login(smtp.user, password)
        client.send_message(mail)


async def send(
    message: Message,
    alert: AlertSpec,
    *,
    smtp: SmtpSpec | None,
    base_url: str | None,
    env: Mapping[str, str],
    http: httpx.AsyncClient,
) -> None:
    """Send ``message`` where ``alert`` says; raises :class:`DeliveryError`."""
    import httpx

    try:
        if alert.webhook is not None or alert.slack is not None:
            target = alert.webhook or alert.slack
            assert target is not None
            url = resolve(target, env, alert.destination + ":")
            body = (
                webhook_body(message, base_url)
                if alert.webhook is not None
                else slack_body(message, base_url)
            )
            response = await http.post(url, json=body)
            if response.status_code >= 300:
                raise DeliveryError(
                    f"{alert.destination} answered {response.status_code}: {response.text[:200]}"
                )
            return
        assert alert.email is not None
        if smtp is None:
            raise DeliveryError("email: needs alerting.smtp in reactor.yaml")
        password = resolve(smtp.password, env, "alerting.smtp.password") if smtp.password else None
        mail = email_message(message, alert.email, smtp, base_url)
        await anyio.to_thread.run_sync(_send_mail, mail, smtp, password)
    except (httpx.HTTPError, OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{alert.destination}: {type(exc).__name__}: {exc}") from exc
