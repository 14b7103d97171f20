"""``http:`` tasks against a real HTTP server on 127.0.0.1: requests, outputs and failures."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.http_task import MAX_BODY, HttpAction, HttpTaskSpec
from reactor.actions import LogStream, TaskRequest
from reactor.errors import ActionError
from reactor.pipelines import load_folder

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """A small HTTP server in a thread; ``/slow`` answers only once ``release`` is set."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    slow_started: threading.Event = field(default_factory=threading.Event)


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Served-By", "test")
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.received.append(
                Received(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            if parts.path == "/slow":
                server.slow_started.set()
                server.release.wait(30)
                self._answer(200, b"late", "text/plain")
            elif parts.path == "/data":
                self._answer(200, b'{"ok": true, "field": 7}', "application/json")
            elif parts.path == "/text":
                self._answer(200, "héllo".encode(), "text/plain; charset=utf-8")
            elif parts.path == "/fail":
                self._answer(500, b"broken on purpose " + b"x" * 2000, "text/plain")
            elif parts.path == "/big":
                self._answer(200, b"a" * (MAX_BODY + 10), "text/plain")
            elif parts.path == "/not-json":
                self._answer(200, b"<html>", "application/json")
            else:
                echo = {"method": self.command, "path": parts.path, "body": body.decode()}
                self._answer(201, json.dumps(echo).encode(), "application/json")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def call(http: dict[str, Any], scope: dict[str, Any] | None = None, **task: Any) -> Any:
    spec = HttpTaskSpec.model_validate({"id": "t", "http": http, **task})
    logs: list[tuple[LogStream, str]] = []
    request = TaskRequest(
        run_id="run-1",
        pipeline="direct",
        task_id="t",
        attempt=1,
        scope=scope or {},
        base_dir=Path("."),
        log=lambda stream, line: logs.append((stream, line)),
    )
    return await HttpAction(spec, Path(".")).execute(request)


async def test_get_json_output(server: Server) -> None:
    output = await call({"url": f"{server.url}/data"})
    assert output["status"] == 200
    assert output["body"] == {"ok": True, "field": 7}
    assert output["headers"]["x-served-by"] == "test"
    assert output["headers"]["content-type"] == "application/json"
    [got] = server.received
    assert (got.method, got.path) == ("GET", "/data")


async def test_post_json_body_with_templated_url_headers_and_params(server: Server) -> None:
    scope = {"env": {"BASE": server.url, "TOKEN": "s3cret"}, "run": {"id": "r-42"}}
    output = await call(
        {
            "method": "post",
            "url": "{{ env.BASE }}/runs/{{ run.id }}",
            "headers": {"Authorization": "Bearer {{ env.TOKEN }}"},
            "params": {"page": 1, "tag": ["a", "{{ run.id }}"]},
            "json": {"status": "ok", "run": "{{ run.id }}"},
        },
        scope,
    )
    assert output["status"] == 201
    [got] = server.received
    assert (got.method, got.path) == ("POST", "/runs/r-42")
    assert got.headers["authorization"] == "Bearer s3cret"
    assert got.headers["content-type"] == "application/json"
    assert got.query == {"page": ["1"], "tag": ["a", "r-42"]}
    assert json.loads(got.body) == {"status": "ok", "run": "r-42"}
    assert json.loads(output["body"]["body"]) == {"status": "ok", "run": "r-42"}


async def test_text_and_form_bodies(server: Server) -> None:
    await call({"method": "PUT", "url": f"{server.url}/plain", "body": "line {{ n }}"}, {"n": 3})
    await call({"method": "POST", "url": f"{server.url}/form", "form": {"a": "1", "b": "x y"}})
    plain, form = server.received
    assert plain.body == b"line 3"
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(form.body.decode()) == {"a": ["1"], "b": ["x y"]}


async def test_text_output_and_forced_output_kinds(server: Server) -> None:
    text = await call({"url": f"{server.url}/text"})
    assert text["body"] == "héllo"
    as_text = await call({"url": f"{server.url}/data", "output": "text"})
    assert as_text["body"] == '{"ok": true, "field": 7}'
    nothing = await call({"url": f"{server.url}/data", "output": "none"})
    assert (nothing["status"], nothing["body"]) == (200, None)


async def test_unexpected_status_names_the_request_without_query_or_headers(
    server: Server,
) -> None:
    with pytest.raises(ActionError) as caught:
        await call(
            {
                "method": "POST",
                "url": f"{server.url}/fail?token=s3cret",
                "headers": {"Authorization": "Bearer s3cret"},
            }
        )
    message = str(caught.value)
    assert message.startswith(f"POST {server.url}/fail answered 500: broken on purpose xxx")
    assert len(message) == len(f"POST {server.url}/fail answered 500: ") + 500
    assert "s3cret" not in message


async def test_expect_lists_the_statuses_that_succeed(server: Server) -> None:
    created = await call({"method": "POST", "url": f"{server.url}/x", "expect": [200, 201]})
    assert created["status"] == 201
    with pytest.raises(ActionError, match=r"^POST .*/x answered 201: \{"):
        await call({"method": "POST", "url": f"{server.url}/x", "expect": 200})
    failed = await call({"url": f"{server.url}/fail", "expect": [500], "output": "none"})
    assert failed["status"] == 500


async def test_unreachable_port_is_a_connect_error_retry_on_can_match() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(ActionError) as caught:
        await call({"url": f"{url}?key=s3cret"})
    assert str(caught.value).startswith(f"GET {url}: cannot connect: ")
    assert "s3cret" not in str(caught.value)
    assert "ConnectError" in caught.value.exceptions
    assert "httpx.ConnectError" in caught.value.exceptions


async def test_an_unknown_host_is_a_connect_error() -> None:
    with pytest.raises(ActionError, match=r"^GET http://nowhere\.invalid/: cannot connect: "):
        await call({"url": "http://user:pw@nowhere.invalid/?k=v"})


async def test_timeout_without_an_answer(server: Server) -> None:
    with pytest.raises(ActionError) as caught:
        await call({"url": f"{server.url}/slow?key=s3cret", "timeout": "200ms"})
    assert str(caught.value) == f"GET {server.url}/slow: no answer within 200ms"
    assert "TimeoutError" in caught.value.exceptions
    assert server.slow_started.is_set()


async def test_a_body_over_1_mib_fails_with_its_size(server: Server) -> None:
    with pytest.raises(ActionError) as caught:
        await call({"url": f"{server.url}/big"})
    assert str(caught.value) == (
        f"GET {server.url}/big answered 200 with a body of {MAX_BODY + 10} bytes, more than"
        f" the {MAX_BODY} bytes (1 MiB) an output may hold; set output: none to ignore it"
    )
    ignored = await call({"url": f"{server.url}/big", "output": "none"})
    assert ignored["status"] == 200


async def test_a_json_answer_that_is_not_json(server: Server) -> None:
    with pytest.raises(ActionError, match=r"answered 200 with a body that is not JSON \("):
        await call({"url": f"{server.url}/not-json"})


async def test_bad_urls_at_run_time() -> None:
    with pytest.raises(ActionError, match=r"^'ftp://host/x' is not an http:// or https:// URL$"):
        await call({"url": "ftp://user:pw@host/x?secret=1"})
    with pytest.raises(ActionError, match=r"^'' is not an http:// or https:// URL$"):
        await call({"url": "{{ env.MISSING_URL }}"}, {"env": {"MISSING_URL": ""}})


async def test_a_later_task_reads_the_answer(
    server: Server, write_pipeline, start_reactor, store, monkeypatch
) -> None:
    monkeypatch.setenv("REACTOR_TEST_API", server.url)
    write_pipeline(
        "notify.yaml",
        """
        name: notify
        tasks:
          - id: fetch
            http:
              url: "{{ env.REACTOR_TEST_API }}/data"
          - id: report
            needs: [fetch]
            http:
              method: POST
              url: "{{ env.REACTOR_TEST_API }}/report"
              json: {field: "{{ tasks.fetch.output.body.field }}"}
              expect: [201]
        """,
    )
    async with start_reactor() as reactor:
        run = await reactor.run_now("notify")
        finished = await reactor.wait_run(run.id)
    assert finished.status == "succeeded", finished.reason
    outputs = {t.task_id: t.output for t in await store.task_runs(run.id)}
    assert outputs["fetch"]["body"] == {"ok": True, "field": 7}
    report = server.received[-1]
    assert (report.method, report.path) == ("POST", "/report")
    assert json.loads(report.body) == {"field": 7}


def test_bad_specs_are_reported_at_their_lines(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: both
            http:
              url: http://127.0.0.1/x
              json: {a: 1}
              body: text
          - id: verb
            http:
              method: FETCH
              url: http://127.0.0.1/x
          - id: status
            http:
              url: http://127.0.0.1/x
              expect: [200, 600]
          - id: output
            http:
              url: http://127.0.0.1/x
              output: xml
          - id: nourl
            http: {method: GET}
        """)
    )
    found = [str(p) for p in load_folder(pipelines_dir).problems]
    bad = "pipelines/bad.yaml:"
    assert found == [
        bad + "4: tasks[0].http: write one of json:, body: or form:, not json and body",
        bad + "10: tasks[1].http.method: 'FETCH' is not an HTTP method;"
        " allowed: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        bad + "15: tasks[2].http.expect: 600 is not an HTTP status (100 to 599)",
        bad + "19: tasks[3].http.output: Input should be 'json', 'text' or 'none', got 'xml'",
        bad + "21: tasks[4].http.url: field required",
    ]
    assert len(found) == 5


def test_a_broken_template_is_reported_at_its_task(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: template
            http:
              url: "{{ env.X"
        """)
    )
    [found] = [str(p) for p in load_folder(pipelines_dir).problems]
    assert found.startswith("pipelines/bad.yaml:4: tasks[0].http: unexpected end of template")
