"""``on: webhook`` over real HTTP: each signature preset, rejections that store nothing, dedupe.

Signatures are computed here as each provider documents them; the GitHub and Slack
examples from their documentation are checked verbatim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from connectors.webhooks import hook_source
from reactor.cli import app
from reactor.clock import FakeClock
from reactor.errors import SpecErrorGroup
from reactor.pipelines import load_folder
from reactor.service import Reactor
from reactor.store import Store

from .support import wait_run

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

# Slack's documented example request was signed at this instant; the fake clock stands there.
SLACK_DOC_TIMESTAMP = 1531420618
NOW = datetime.fromtimestamp(SLACK_DOC_TIMESTAMP, UTC)

GITHUB = """
name: on_push
params:
  ref: {type: string}
triggers:
  - on: webhook
    name: github
    signature: github
    secret: env:TEST_GITHUB_SECRET
    when: "event.data.headers['x-github-event'] == 'push'"
    params: {ref: "{{ event.data.body.ref }}"}
tasks:
  - id: show
    shell: "echo pushed {{ params.ref }}"
"""

STRIPE = """
name: on_payment
params:
  amount: {type: integer}
triggers:
  - on: webhook
    name: stripe
    signature: stripe
    secret: file:secrets/stripe.txt
    params: {amount: "{{ event.data.body.data.object.amount }}"}
tasks:
  - id: show
    shell: "echo paid {{ params.amount }}"
"""

SLACK = """
name: on_command
params:
  command: {type: string}
triggers:
  - on: webhook
    name: slack
    signature: slack
    secret: env:TEST_SLACK_SECRET
    params: {command: "{{ event.data.body.command }}"}
tasks:
  - id: show
    shell: "echo {{ params.command }}"
"""

CUSTOM = """
name: on_custom
triggers:
  - on: webhook
    name: custom
    signature:
      type: hmac
      header: X-Signature
      algorithm: sha512
      encoding: base64
      timestamp_header: X-Timestamp
      signed: timestamp.body
    secret: env:TEST_CUSTOM_SECRET
  - on: webhook
    name: token
    signature: token
    secret: env:TEST_TOKEN_SECRET
tasks:
  - id: show
    shell: "echo {{ event.data.body.n }}"
"""

PUBLIC = """
name: on_open
params:
  n: {type: integer, default: 0}
triggers:
  - on: webhook
    name: open
    public: true
    max_body: 1KiB
    params: {n: "{{ event.data.body.n }}"}
tasks:
  - id: show
    shell: "echo open {{ params.n }}"
"""

PUBLIC_TOO = """
name: also_open
triggers:
  - on: webhook
    name: open
    public: true
    max_body: 1024
    when: "event.data.query.get('also') == 'yes'"
tasks:
  - id: show
    shell: "echo also"
"""

CLOUD = """
name: on_cloudevent
params:
  order: {type: string}
triggers:
  - on: webhook
    name: cloud
    public: true
    type: "orders.*"
    params: {order: "{{ event.data.order }}"}
tasks:
  - id: show
    shell: "echo {{ event.type }} {{ event.source }} {{ params.order }}"
"""

SECRETS = {
    "TEST_GITHUB_SECRET": "It's a Secret to Everybody",
    "TEST_SLACK_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
    "TEST_CUSTOM_SECRET": "custom-secret",
    "TEST_TOKEN_SECRET": "s3cr3t-token",
}
STRIPE_SECRET = "whsec_test_secret"


def github_signature(secret: str, body: bytes) -> str:
    """GitHub: ``sha256=`` + hex HMAC-SHA256 of the body with the webhook secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def stripe_signature(secret: str, body: bytes, timestamp: int) -> str:
    """Stripe: ``t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">``."""
    signed = f"{timestamp}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def slack_signature(secret: str, body: bytes, timestamp: int) -> str:
    """Slack: ``v0=`` + hex HMAC-SHA256 of ``v0:<ts>:<body>``."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@pytest.fixture
def hooks_env(monkeypatch: pytest.MonkeyPatch, pipelines_dir: Path) -> Iterator[None]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    (pipelines_dir / "secrets").mkdir()
    (pipelines_dir / "secrets" / "stripe.txt").write_text(STRIPE_SECRET + "\n")
    yield


@pytest.fixture
def served(write_pipeline, start_reactor, hooks_env):
    """``async with served() as (reactor, client)``: every hook pipeline, on a free port."""
    for filename, text in [
        ("github.yaml", GITHUB),
        ("stripe.yaml", STRIPE),
        ("slack.yaml", SLACK),
        ("custom.yaml", CUSTOM),
        ("public.yaml", PUBLIC),
        ("public_too.yaml", PUBLIC_TOO),
        ("cloud.yaml", CLOUD),
    ]:
        write_pipeline(filename, text)

    @asynccontextmanager
    async def serve() -> AsyncIterator[tuple[Reactor, httpx.AsyncClient]]:
        clock = FakeClock(NOW)
        async with start_reactor(http=("127.0.0.1", 0), clock=clock) as reactor:
            base = f"http://127.0.0.1:{reactor.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                yield reactor, client

    return serve


async def nothing_stored(store: Store, hook: str) -> bool:
    return await store.last_event(hook_source(hook)) is None and not await store.list_runs(
        pipeline=None, limit=10, before=None
    )


async def outputs(store: Store, run_ids: list[str]) -> list[str]:
    found = []
    for run_id in run_ids:
        run = await wait_run(store, run_id)
        assert run.status == "succeeded", run.reason
        found.append((await store.task_runs(run_id))[0].output)
    return found


async def test_github_documented_example_and_a_push_that_starts_one_run(served, store) -> None:
    # GitHub's documentation: this secret and payload give exactly this signature.
    documented = github_signature(SECRETS["TEST_GITHUB_SECRET"], b"Hello, World!")
    assert documented == ("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    async with served() as (_reactor, client):
        wrong = await client.post(
            "/hooks/github",
            content=body,
            headers=headers | {"X-Hub-Signature-256": github_signature("nope", body)},
        )
        missing = await client.post("/hooks/github", content=body, headers=headers)
        assert await nothing_stored(store, "github")
        signed = headers | {
            "X-Hub-Signature-256": github_signature(SECRETS["TEST_GITHUB_SECRET"], body)
        }
        first = await client.post("/hooks/github", content=body, headers=signed)
        retried = await client.post("/hooks/github", content=body, headers=signed)
        ping_body = b'{"zen": "Keep it simple."}'
        ping = await client.post(
            "/hooks/github",
            content=ping_body,
            headers=headers
            | {
                "X-GitHub-Event": "ping",
                "X-GitHub-Delivery": "ping-1",
                "X-Hub-Signature-256": github_signature(SECRETS["TEST_GITHUB_SECRET"], ping_body),
            },
        )
        assert await outputs(store, first.json()["run_ids"]) == ["pushed refs/heads/main"]

    assert (wrong.status_code, wrong.json()) == (
        401,
        {"error": "the signature in the X-Hub-Signature-256 header does not match the request"},
    )
    assert (missing.status_code, missing.json()) == (
        401,
        {"error": "the request has no X-Hub-Signature-256 header"},
    )
    assert first.status_code == 202
    assert first.json()["event_id"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert retried.status_code == 200
    assert retried.json() == first.json() | {"duplicate": True}
    assert (ping.status_code, ping.json()["run_ids"]) == (202, [])
    assert len(await store.list_runs(pipeline=None, limit=10, before=None)) == 1
    stored = await store.get_event(hook_source("github"), first.json()["event_id"])
    assert stored is not None
    assert stored.event.type == "webhook.github"
    assert "x-hub-signature-256" not in stored.event.data["headers"]
    assert stored.event.data["headers"]["x-github-event"] == "push"


async def test_stripe_signature_from_a_secret_file_and_a_stale_timestamp(served, store) -> None:
    body = json.dumps({"type": "charge.succeeded", "data": {"object": {"amount": 1250}}}).encode()
    kind = {"Content-Type": "application/json"}
    async with served() as (_reactor, client):
        stale = await client.post(
            "/hooks/stripe",
            content=body,
            headers=kind
            | {
                "Stripe-Signature": stripe_signature(STRIPE_SECRET, body, SLACK_DOC_TIMESTAMP - 600)
            },
        )
        assert await nothing_stored(store, "stripe")
        good = await client.post(
            "/hooks/stripe",
            content=body,
            headers=kind
            | {"Stripe-Signature": stripe_signature(STRIPE_SECRET, body, SLACK_DOC_TIMESTAMP)},
        )
        assert await outputs(store, good.json()["run_ids"]) == ["paid 1250"]

    assert (stale.status_code, stale.json()) == (
        401,
        {
            "error": "the request timestamp (Stripe-Signature t=) is 600 s old,"
            " outside the 300 s tolerance"
        },
    )
    assert good.status_code == 202


async def test_slack_challenge_slash_command_and_bad_signature(served, store) -> None:
    secret = SECRETS["TEST_SLACK_SECRET"]
    # Slack's documented example: a slash command, form-encoded, and its signature.
    command = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
        b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
        b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
        b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    documented = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert slack_signature(secret, command, SLACK_DOC_TIMESTAMP) == documented
    form = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(SLACK_DOC_TIMESTAMP),
    }
    challenge = json.dumps(
        {
            "token": "x",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()
    async with served() as (_reactor, client):
        verification = await client.post(
            "/hooks/slack",
            content=challenge,
            headers=form
            | {
                "Content-Type": "application/json",
                "X-Slack-Signature": slack_signature(secret, challenge, SLACK_DOC_TIMESTAMP),
            },
        )
        forged = await client.post(
            "/hooks/slack",
            content=command,
            headers=form
            | {"X-Slack-Signature": slack_signature("other", command, SLACK_DOC_TIMESTAMP)},
        )
        assert await nothing_stored(store, "slack")
        good = await client.post(
            "/hooks/slack", content=command, headers=form | {"X-Slack-Signature": documented}
        )
        assert await outputs(store, good.json()["run_ids"]) == ["/webhook-collect"]
        stored = await store.get_event(hook_source("slack"), good.json()["event_id"])

    assert (verification.status_code, verification.json()) == (
        200,
        {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"},
    )
    assert (forged.status_code, forged.json()) == (
        401,
        {"error": "the signature in the X-Slack-Signature header does not match the request"},
    )
    assert good.status_code == 202
    assert stored is not None
    assert stored.event.data["body"]["user_name"] == "roadrunner"
    assert stored.event.data["body"]["text"] == ""


async def test_generic_hmac_and_token(served, store) -> None:
    body = b'{"n": 7}'
    stamp = str(SLACK_DOC_TIMESTAMP)
    digest = hmac.new(b"custom-secret", stamp.encode() + b"." + body, hashlib.sha512).digest()
    signed = {
        "Content-Type": "application/json",
        "X-Timestamp": stamp,
        "X-Signature": base64.b64encode(digest).decode(),
    }
    async with served() as (_reactor, client):
        unsigned_token = await client.post("/hooks/token", content=body)
        wrong_token = await client.post(
            "/hooks/token", content=body, headers={"Authorization": "Bearer guess"}
        )
        tampered = await client.post("/hooks/custom", content=b'{"n": 8}', headers=signed)
        assert await nothing_stored(store, "custom") and await nothing_stored(store, "token")
        custom = await client.post("/hooks/custom", content=body, headers=signed)
        token = await client.post(
            "/hooks/token",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": "Bearer s3cr3t-token"},
        )
        assert await outputs(store, custom.json()["run_ids"] + token.json()["run_ids"]) == [
            "7",
            "7",
        ]
        stored = await store.get_event(hook_source("token"), token.json()["event_id"])

    assert (unsigned_token.status_code, unsigned_token.json()["error"]) == (
        401,
        "the request has no Authorization: Bearer <token> header (or X-Reactor-Token header)",
    )
    assert wrong_token.json() == {"error": "the token does not match the hook's secret"}
    assert (tampered.status_code, tampered.json()["error"]) == (
        401,
        "the signature in the X-Signature header does not match the request",
    )
    assert (custom.status_code, token.status_code) == (202, 202)
    assert stored is not None and "authorization" not in stored.event.data["headers"]


async def test_public_hook_rejections_store_nothing_and_idempotency_keys_dedupe(
    served, store
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"n": "'
        yield b"x" * 2000
        yield b'"}'

    async with served() as (_reactor, client):
        unknown = await client.post("/hooks/nope", json={"n": 1})
        declared = await client.post("/hooks/open", content=b"{" + b" " * 1100 + b"}")
        streamed = await client.post(
            "/hooks/open", content=chunks(), headers={"Content-Type": "application/json"}
        )
        bad_json = await client.post(
            "/hooks/open", content=b'{"n": ', headers={"Content-Type": "application/json"}
        )
        binary = await client.post(
            "/hooks/open", content=b"\x00\x01", headers={"Content-Type": "application/octet-stream"}
        )
        assert await nothing_stored(store, "open")
        keyed = {"Idempotency-Key": "order-42"}
        first = await client.post("/hooks/open?also=yes", json={"n": 3}, headers=keyed)
        again = await client.post("/hooks/open?also=yes", json={"n": 3}, headers=keyed)
        other = await client.post("/hooks/open", json={"n": 4})
        found = await outputs(store, first.json()["run_ids"] + other.json()["run_ids"])

    assert (unknown.status_code, unknown.json()) == (404, {"error": "no webhook 'nope'"})
    too_big = {"error": "the body is larger than this hook's max_body (1024 bytes)"}
    assert (declared.status_code, declared.json()) == (413, too_big)
    assert (streamed.status_code, streamed.json()) == (413, too_big)
    assert (bad_json.status_code, bad_json.json()) == (
        422,
        {"error": "the body is not valid JSON: Expecting value at line 1 column 7"},
    )
    assert (binary.status_code, binary.json()) == (
        415,
        {
            "error": "unsupported content type 'application/octet-stream'; send JSON"
            " (application/json), a form (application/x-www-form-urlencoded) or text"
        },
    )
    # Two pipelines share the hook: one request, checked once, one event, a run of each.
    assert first.status_code == 202 and len(first.json()["run_ids"]) == 2
    assert first.json()["event_id"] == "order-42"
    assert (again.status_code, again.json()) == (200, first.json() | {"duplicate": True})
    assert len(other.json()["run_ids"]) == 1
    assert sorted(found) == ["also", "open 3", "open 4"]


async def test_cloudevents_in_binary_and_structured_mode(served, store) -> None:
    structured = {
        "specversion": "1.0",
        "id": "evt-2",
        "source": "shop/us",
        "type": "orders.paid",
        "data": {"order": "B-2"},
    }
    async with served() as (_reactor, client):
        missing_id = await client.post(
            "/hooks/cloud",
            json={"order": "A-0"},
            headers={"ce-specversion": "1.0", "ce-source": "shop/eu", "ce-type": "orders.created"},
        )
        bad = await client.post(
            "/hooks/cloud",
            json={"specversion": "0.3", "type": "orders.paid"},
            headers={"Content-Type": "application/cloudevents+json"},
        )
        assert await nothing_stored(store, "cloud")
        binary = await client.post(
            "/hooks/cloud",
            json={"order": "A-1"},
            headers={
                "ce-specversion": "1.0",
                "ce-id": "evt-1",
                "ce-source": "shop/eu",
                "ce-type": "orders.created",
            },
        )
        structured_answer = await client.post(
            "/hooks/cloud",
            content=json.dumps(structured).encode(),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        other_type = await client.post(
            "/hooks/cloud",
            content=json.dumps(structured | {"id": "evt-3", "type": "customers.new"}).encode(),
            headers={"Content-Type": "application/cloudevents+json"},
        )
        # A published event cannot pass itself off as one that came through the hook.
        spoofed = await client.post(
            "/api/events", json=structured | {"id": "evt-4", "reactorhook": "cloud"}
        )
        found = await outputs(store, binary.json()["run_ids"] + structured_answer.json()["run_ids"])
        stored = await store.get_event("shop/eu", "evt-1")

    assert (missing_id.status_code, missing_id.json()) == (
        422,
        {
            "error": "a binary-mode CloudEvent needs the headers ce-id, ce-source, ce-type,"
            " ce-specversion; missing: ce-id"
        },
    )
    assert (bad.status_code, bad.json()) == (
        422,
        {"error": "specversion '0.3' is not supported; use '1.0'"},
    )
    assert (binary.status_code, binary.json()["event_id"]) == (202, "evt-1")
    assert structured_answer.status_code == 202
    assert found == ["orders.created shop/eu A-1", "orders.paid shop/us B-2"]
    assert (other_type.status_code, other_type.json()["run_ids"]) == (202, [])
    assert (spoofed.status_code, spoofed.json()) == (
        400,
        {"error": "reactorhook is set only by POST /hooks/{name}"},
    )
    assert stored is not None and stored.event.data == {"order": "A-1"}


async def test_serve_refuses_a_hook_without_its_secret_and_validate_warns(
    write_pipeline, pipelines_dir, store, monkeypatch
) -> None:
    monkeypatch.delenv("TEST_GITHUB_SECRET", raising=False)
    write_pipeline("github.yaml", GITHUB)
    write_pipeline("stripe.yaml", STRIPE)
    with pytest.raises(SpecErrorGroup) as refused:
        async with Reactor(pipelines_dir, store):
            pass
    validated = CliRunner().invoke(app, ["validate", str(pipelines_dir)])

    assert str(refused.value).splitlines() == [
        "pipelines/github.yaml:8: triggers[0].secret: hook 'github': environment variable"
        " TEST_GITHUB_SECRET is not set",
        f"pipelines/stripe.yaml:8: triggers[0].secret: hook 'stripe': cannot read secret file"
        f" {pipelines_dir / 'secrets' / 'stripe.txt'}: No such file or directory",
    ]
    assert validated.exit_code == 0, validated.output
    assert "warning: pipelines/github.yaml:8: triggers[0].secret: hook 'github'" in (
        validated.output
    )
    assert "ok: 2 pipeline(s): on_payment, on_push" in validated.output


def test_spec_errors_literal_secret_missing_signature_and_conflicting_hooks(
    write_pipeline, pipelines_dir
) -> None:
    write_pipeline(
        "literal.yaml",
        """
        name: literal
        triggers:
          - on: webhook
            name: a
            signature: github
            secret: hunter2
        tasks: [{id: t, shell: "true"}]
        """,
    )
    write_pipeline(
        "open.yaml",
        """
        name: unsigned
        triggers:
          - on: webhook
            name: b
        tasks: [{id: t, shell: "true"}]
        """,
    )
    write_pipeline(
        "size.yaml",
        """
        name: size
        triggers:
          - {on: webhook, name: c, public: true, max_body: lots}
        tasks: [{id: t, shell: "true"}]
        """,
    )
    write_pipeline(
        "first.yaml",
        """
        name: first
        triggers:
          - {on: webhook, name: shared, signature: token, secret: env:ONE}
        tasks: [{id: t, shell: "true"}]
        """,
    )
    write_pipeline(
        "second.yaml",
        """
        name: second
        triggers:
          - on: webhook
            name: shared
            signature: token
            secret: env:TWO
        tasks: [{id: t, shell: "true"}]
        """,
    )
    loaded = load_folder(pipelines_dir)

    assert sorted(loaded.pipelines) == ["first"]
    assert [str(p) for p in loaded.problems] == [
        "pipelines/literal.yaml:6: triggers[0].secret: write env:NAME or file:PATH; a secret"
        " never sits in the pipeline file itself",
        "pipelines/open.yaml:3: triggers[0]: a webhook needs signature: (github, stripe, slack,"
        " token or {type: hmac, ...}) and secret:, or public: true for a hook anyone may call",
        "pipelines/size.yaml:3: triggers[0].max_body: 'lots' is not a size; write bytes"
        " (1048576) or 512KiB, 1MiB, 10MB",
        "pipelines/second.yaml:4: triggers[0].name: hook 'shared' is also used by first/webhook"
        " (pipelines/first.yaml) with other settings; triggers sharing a hook need the same"
        " signature, secret, public and max_body",
    ]
