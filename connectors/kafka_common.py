"""What the Kafka trigger and task share: brokers from ``connection:``, security settings."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from reactor.config import is_url
from reactor.errors import ConnectorError
from reactor.specs import Spec

__all__ = [
    "KafkaSecurity",
    "bootstrap_servers",
    "check_connection",
    "client_options",
    "text_or_base64",
]

SCHEME = "kafka://"

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def check_connection(value: str) -> str:
    """An inline connection must be ``kafka://host:port[,host:port]`` (a name is checked later)."""
    if is_url(value):
        bootstrap_servers(value)
    return value


def bootstrap_servers(url: str) -> list[str]:
    """``kafka://a:9092,b:9092`` -> ``["a:9092", "b:9092"]``; raises ``ValueError`` if malformed."""
    if not url.startswith(SCHEME):
        scheme = url.split("://", 1)[0] if "://" in url else url
        raise ValueError(
            f"a Kafka connection is kafka://host:port[,host:port...], not {scheme}://..."
        )
    rest = url[len(SCHEME) :].split("/", 1)[0].split("?", 1)[0]
    servers = [part.strip() for part in rest.split(",") if part.strip()]
    if not servers:
        raise ValueError(f"{url!r} names no broker; write kafka://host:port")
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"broker {server!r} in {url!r} is not host:port")
    return servers


def _secret_reference(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if value.startswith("env:") and value[4:]:
        return value
    if value.startswith("file:") and value[5:]:
        return value
    raise ValueError(
        f"{field}: write env:VARIABLE or file:PATH, so the secret never sits in a pipeline file"
    )


class KafkaSecurity(Spec):
    """``security:``: TLS and SASL for a real cluster (the default is plain TCP)."""

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism | None = None
    #: A name, or ``env:VAR``.
    username: str | None = Field(None, min_length=1)
    #: ``env:VAR`` or ``file:PATH``.
    password: str | None = None
    #: CA bundle to check the brokers' certificates with (relative to the pipeline file).
    ssl_cafile: str | None = Field(None, min_length=1)
    #: Client certificate and key, for brokers that ask for one.
    ssl_certfile: str | None = Field(None, min_length=1)
    ssl_keyfile: str | None = Field(None, min_length=1)
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        sasl = self.protocol.startswith("SASL_")
        tls = self.protocol.endswith("SSL")
        if sasl:
            if self.sasl_mechanism is None:
                raise ValueError(f"protocol {self.protocol} needs sasl_mechanism:")
            if self.username is None or self.password is None:
                raise ValueError(f"protocol {self.protocol} needs username: and password:")
        elif self.sasl_mechanism or self.username or self.password:
            raise ValueError(
                "sasl_mechanism:, username: and password: need protocol SASL_PLAINTEXT or SASL_SSL"
            )
        given_tls = [
            name
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if given_tls and not tls:
            raise ValueError(f"{given_tls[0]}: needs protocol SSL or SASL_SSL")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile: and ssl_keyfile: go together")
        _secret_reference(self.password, "password")
        return self


def _read_secret(value: str, base_dir: Path, env: Mapping[str, str], what: str) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if not env.get(name):
            raise ConnectorError(f"{what} reads environment variable {name}, which is not set")
        return env[name]
    if value.startswith("file:"):
        path = base_dir / value[5:]
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConnectorError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    return value


def client_options(
    security: KafkaSecurity, base_dir: Path, env: Mapping[str, str]
) -> dict[str, Any]:
    """aiokafka keyword arguments for ``security`` (secrets read now; ``ConnectorError``)."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.protocol.endswith("SSL"):
        cafile = base_dir / security.ssl_cafile if security.ssl_cafile else None
        try:
            context = ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)
            if security.ssl_certfile and security.ssl_keyfile:
                context.load_cert_chain(
                    str(base_dir / security.ssl_certfile), str(base_dir / security.ssl_keyfile)
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectorError(f"security: cannot load TLS files: {exc}") from exc
        context.check_hostname = security.ssl_check_hostname
        options["ssl_context"] = context
    if security.protocol.startswith("SASL_"):
        assert security.username is not None and security.password is not None
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = _read_secret(
            security.username, base_dir, env, "security.username"
        )
        options["sasl_plain_password"] = _read_secret(
            security.password, base_dir, env, "security.password"
        )
    return options


def text_or_base64(raw: bytes | None) -> str | None:
    """A key or header value as text when it is UTF-8, else as base64."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii")
