"""``http:`` tasks: one templated HTTP request, its answer (status, headers, body) as output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import anyio
import httpx
from pydantic import ConfigDict, Field, field_validator, model_validator

from reactor.actions import TaskRequest
from reactor.durations import Duration, format_duration
from reactor.errors import ActionError, ExpressionError, exception_names
from reactor.expressions import CompiledValue, is_template
from reactor.specs import Spec, TaskSpec

__all__ = ["HttpAction", "HttpRequestSpec", "HttpTaskSpec"]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
#: The largest response body kept as a task's output.
MAX_BODY = 1024 * 1024
#: How much of an unexpected answer's body its error message shows.
_ERROR_BODY_CHARS = 500


def _check_method(value: str) -> str:
    method = value.strip().upper()
    if method not in METHODS:
        raise ValueError(f"{value!r} is not an HTTP method; allowed: {', '.join(METHODS)}")
    return method


class HttpRequestSpec(Spec):
    """``http: {method, url, headers, params, json | body | form, expect, timeout, output}``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    method: str = "GET"
    url: str = Field(min_length=1)
    headers: dict[str, str] = {}
    #: The query string; values may be lists (``?tag=a&tag=b``).
    params: dict[str, Any] = {}
    json_: Any = Field(None, alias="json")
    body: str | None = None
    form: dict[str, Any] | None = None
    #: The statuses that count as success; by default any 2xx.
    expect: list[int] | None = None
    timeout: Duration = Field(30.0, gt=0)
    #: How the response body becomes the output; by default JSON if the response says so.
    output: Literal["json", "text", "none"] | None = None

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return value if is_template(value) else _check_method(value)

    @field_validator("expect", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list):
            for status in value:
                if isinstance(status, bool) or not isinstance(status, int):
                    # pydantic turns ValueError (not TypeError) into a validation error.
                    raise ValueError(  # noqa: TRY004
                        f"expect lists HTTP status codes (numbers), got {status!r}"
                    )
                if not 100 <= status <= 599:
                    raise ValueError(f"{status} is not an HTTP status (100 to 599)")
            if not value:
                raise ValueError("expect lists no status; remove it to accept any 2xx")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestSpec:
        given = [
            key
            for key, present in (
                ("json", "json_" in self.model_fields_set),
                ("body", self.body is not None),
                ("form", self.form is not None),
            )
            if present
        ]
        if len(given) > 1:
            raise ValueError(f"write one of json:, body: or form:, not {' and '.join(given)}")
        return self


class HttpTaskSpec(TaskSpec):
    """A task that sends one HTTP request and fails unless the answer is expected."""

    type_key: ClassVar[str] = "http"

    http: HttpRequestSpec


def _where(url: httpx.URL) -> str:
    """``url`` as errors show it: no user, password, query string or fragment (secrets)."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))


def _redacted(text: str) -> str:
    """A URL that httpx could not parse, cut before anything that may hold a secret."""
    cut = text.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = cut.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def _is_json(response: httpx.Response) -> bool:
    kind = str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _text(content: bytes, response: httpx.Response) -> str:
    return content.decode(response.encoding or "utf-8", errors="replace")


class HttpAction:
    """Renders the request, sends it with one client per attempt and returns the answer."""

    def __init__(self, spec: HttpTaskSpec, base_dir: Path) -> None:
        self.spec = spec.http
        self.has_json = "json_" in self.spec.model_fields_set
        try:
            self.request = CompiledValue(
                {
                    "method": self.spec.method,
                    "url": self.spec.url,
                    "headers": self.spec.headers,
                    "params": self.spec.params,
                    "json": self.spec.json_,
                    "body": self.spec.body,
                    "form": self.spec.form,
                }
            )
        except ExpressionError as exc:
            raise ExpressionError(str(exc), ("http",)) from exc

    def _expected(self, status: int) -> bool:
        if self.spec.expect is None:
            return 200 <= status <= 299
        return status in self.spec.expect

    async def execute(self, request: TaskRequest) -> Any:
        try:
            rendered = self.request.render(request.scope)
        except ExpressionError as exc:
            raise ActionError(f"cannot render the request: {exc}") from exc
        try:
            method = _check_method(str(rendered["method"]))
        except ValueError as exc:
            raise ActionError(f"http.method: {exc}") from None
        raw_url = str(rendered["url"])
        try:
            url = httpx.URL(raw_url)
        except httpx.InvalidURL as exc:
            raise ActionError(f"{_redacted(raw_url)!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ActionError(f"{_redacted(raw_url)!r} is not an http:// or https:// URL")
        where = _where(url)
        headers = {str(k): str(v) for k, v in (rendered["headers"] or {}).items()}
        options: dict[str, Any] = {"params": rendered["params"] or None, "headers": headers}
        if self.has_json:
            options["json"] = rendered["json"]
        elif rendered["body"] is not None:
            options["content"] = str(rendered["body"])
        elif rendered["form"] is not None:
            options["data"] = rendered["form"]
        seconds = self.spec.timeout
        try:
            with anyio.fail_after(seconds):
                async with (
                    httpx.AsyncClient(timeout=seconds, follow_redirects=True) as client,
                    client.stream(method, url, **options) as response,
                ):
                    return await self._answer(request, method, where, response)
        except (TimeoutError, httpx.TimeoutException) as exc:
            names = (*exception_names(exc), *exception_names(TimeoutError()))
            raise ActionError(
                f"{method} {where}: no answer within {format_duration(seconds)}",
                exceptions=tuple(dict.fromkeys(names)),
            ) from None
        except httpx.ConnectError as exc:
            raise ActionError(
                f"{method} {where}: cannot connect: {exc}", exceptions=exception_names(exc)
            ) from exc
        except httpx.HTTPError as exc:
            raise ActionError(
                f"{method} {where}: {type(exc).__name__}: {exc}", exceptions=exception_names(exc)
            ) from exc
        except (TypeError, ValueError) as exc:
            # httpx rejects values it cannot send: a dict as a query value, a header with
            # a line break, a json: value that is not JSON.
            raise ActionError(f"{method} {where}: cannot send the request: {exc}") from exc

    async def _answer(
        self, request: TaskRequest, method: str, where: str, response: httpx.Response
    ) -> Any:
        status = response.status_code
        if not self._expected(status):
            content = await _read(response, _ERROR_BODY_CHARS * 4)
            text = _text(content, response)[:_ERROR_BODY_CHARS]
            raise ActionError(f"{method} {where} answered {status}: {text}")
        request.log("system", f"{method} {where} answered {status}")
        kind = self.spec.output or ("json" if _is_json(response) else "text")
        body: Any = None
        if kind != "none" and method != "HEAD":
            declared = str(response.headers.get("content-length", ""))
            if declared.isdigit() and int(declared) > MAX_BODY:
                raise ActionError(_too_big(method, where, status, f"{int(declared)} bytes"))
            content = await _read(response, MAX_BODY + 1)
            if len(content) > MAX_BODY:
                raise ActionError(_too_big(method, where, status, f"over {MAX_BODY} bytes"))
            if kind == "text":
                body = _text(content, response)
            elif content.strip():
                try:
                    # JSON has no NaN or infinity (the store could not keep them): null.
                    body = json.loads(content, parse_constant=lambda _name: None)
                except ValueError as exc:
                    raise ActionError(
                        f"{method} {where} answered {status} with a body that is not JSON"
                        f" ({exc}); set output: text to keep it as text"
                    ) from None
        return {"status": status, "headers": dict(response.headers.items()), "body": body}


def _too_big(method: str, where: str, status: int, size: str) -> str:
    return (
        f"{method} {where} answered {status} with a body of {size}, more than the"
        f" {MAX_BODY} bytes (1 MiB) an output may hold; set output: none to ignore it"
    )


async def _read(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body (a stream may be endless)."""
    content = bytearray()
    async for chunk in response.aiter_bytes():
        content += chunk
        if len(content) >= limit:
            break
    return bytes(content[:limit])
