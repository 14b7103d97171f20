"""Kafka triggers and tasks written wrong: each problem reported at its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reactor.pipelines import load_folder

pytestmark = [pytest.mark.integration]

BAD = "pipelines/bad.yaml:"

HEAD = """\
name: bad
tasks:
  - id: t
    shell: "true"
triggers:
"""


def problems(folder: Path, trigger: str, settings: str | None = None) -> list[str]:
    (folder / "bad.yaml").write_text(HEAD + textwrap.indent(textwrap.dedent(trigger), "  "))
    if settings is not None:
        (folder / "reactor.yaml").write_text(settings)
    result = load_folder(folder)
    return [str(p) for p in result.problems]


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              topic: a
              pattern: "a.*"
            """,
            BAD + "6: triggers[0]: a kafka trigger needs exactly one of topic: or pattern: (both)",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
            """,
            BAD + "6: triggers[0]: a kafka trigger needs exactly one of topic: or pattern:"
            " (neither)",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              topic: a
              from: beginning
            """,
            BAD + "9: triggers[0].from: Input should be 'latest' or 'earliest', got 'beginning'",
        ),
        (
            """\
            - on: kafka
              connection: postgresql://127.0.0.1/db
              topic: a
            """,
            BAD + "7: triggers[0].connection: a Kafka connection is"
            " kafka://host:port[,host:port...], not postgresql://...",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              topic: "no spaces"
            """,
            BAD + "8: triggers[0].topic: 'no spaces' is not a Kafka topic name"
            " (letters, digits, . _ -)",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              pattern: "orders-("
            """,
            BAD + "8: triggers[0].pattern: pattern: 'orders-(' is not a regular expression:"
            " missing ), unterminated subpattern at position 7",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              topic: a
              decode: avro
            """,
            BAD + "9: triggers[0].decode: Input should be 'json', 'text' or 'bytes', got 'avro'",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              topic: a
              security: {protocol: SASL_SSL, sasl_mechanism: PLAIN, username: u,
                         password: hunter2}
            """,
            BAD + "9: triggers[0].security: password: write env:VARIABLE or file:PATH,"
            " so the secret never sits in a pipeline file",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              topic: a
              security: {protocol: SASL_PLAINTEXT, username: u, password: env:P}
            """,
            BAD + "9: triggers[0].security: protocol SASL_PLAINTEXT needs sasl_mechanism:",
        ),
        (
            """\
            - on: kafka
              connection: kafka://127.0.0.1:9092
              topic: a
              security: {ssl_cafile: ca.pem}
            """,
            BAD + "9: triggers[0].security: ssl_cafile: needs protocol SSL or SASL_SSL",
        ),
    ],
)
def test_bad_trigger(pipelines_dir: Path, trigger: str, expected: str) -> None:
    assert problems(pipelines_dir, trigger) == [expected]


def test_unknown_connection_name(pipelines_dir: Path) -> None:
    trigger = """\
    - on: kafka
      connection: warehouse
      topic: a
    """
    assert problems(pipelines_dir, trigger, "connections:\n  events: kafka://h:9092\n") == [
        BAD + "7: triggers[0].connection: unknown connection 'warehouse': write a URL"
        " (scheme://...) or a name under connections: in reactor.yaml (names: events)"
    ]


def test_named_connection_and_defaults(pipelines_dir: Path) -> None:
    trigger = """\
    - on: kafka
      connection: events
      topic: [a, b]
    """
    assert problems(pipelines_dir, trigger, "connections:\n  events: env:KAFKA_URL\n") == []
    [pipeline] = load_folder(pipelines_dir).pipelines.values()
    spec = pipeline.triggers[0].spec
    assert spec.topic == ["a", "b"]
    assert spec.from_ == "latest"
    assert spec.group_id("bad/kafka") == "reactor.bad.kafka"


def test_bad_task(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: send
            connection: kafka://127.0.0.1:9092
            kafka:
              key: k
          - id: nowhere
            connection: kafka://:9092
            kafka: {topic: t}
        """)
    )
    found = [str(p) for p in load_folder(pipelines_dir).problems]
    assert found == [
        BAD + "5: tasks[0].kafka.topic: field required",
        BAD + "8: tasks[1].connection: broker ':9092' in 'kafka://:9092' is not host:port",
    ]


def test_broken_template_in_task(pipelines_dir: Path) -> None:
    (pipelines_dir / "bad.yaml").write_text(
        textwrap.dedent("""\
        name: bad
        tasks:
          - id: send
            connection: kafka://127.0.0.1:9092
            kafka:
              topic: t
              value: "{{ params.x"
        """)
    )
    [found] = [str(p) for p in load_folder(pipelines_dir).problems]
    assert found.startswith(BAD + "5: tasks[0].kafka: unexpected end of template")
