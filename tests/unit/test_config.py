"""``reactor.yaml``: settings, limits and connections, with every bad input named by file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest

from reactor.actions import TaskRequest
from reactor.config import SETTINGS_FILE, Config, Connections, load_config, parse_size
from reactor.errors import ConnectorError, SpecErrorGroup
from reactor.pipelines import load_folder
from reactor.registry import Registry, TaskKind, TriggerKind
from reactor.specs import EventFilter, EventTriggerSpec, TaskSpec, TriggerSpec


def write(folder: Path, text: str, name: str = SETTINGS_FILE) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(folder: Path, text: str) -> list[str]:
    """Every problem of ``text`` as ``folder/reactor.yaml``, as the user reads them."""
    write(folder, text)
    with pytest.raises(SpecErrorGroup) as caught:
        load_config(folder, display=f"pipelines/{SETTINGS_FILE}")
    return [str(p) for p in caught.value.problems]


# --- a valid file --------------------------------------------------------------------------------


def test_every_setting_is_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
        store: sqlite:///state/reactor.db
        http: 0.0.0.0:9000
        grace: 10s
        heartbeat: 2
        lease: 1m
        limits:
          max_tasks: 8
          webhook_max_body: 512KiB
          bus_capacity: 100
        connections:
          warehouse: postgresql://etl:secret@db.internal/warehouse
          events: env:KAFKA_URL
        """,
    )
    config = load_config(tmp_path)
    spec = config.spec
    assert config.path == tmp_path / SETTINGS_FILE
    assert (spec.store, spec.http) == ("sqlite:///state/reactor.db", "0.0.0.0:9000")
    assert (spec.grace, spec.heartbeat, spec.lease) == (10.0, 2.0, 60.0)
    assert (config.limits.max_tasks, config.limits.webhook_max_body) == (8, 512 * 1024)
    assert config.limits.bus_capacity == 100
    assert dict(config.connections.values) == {
        "warehouse": "postgresql://etl:secret@db.internal/warehouse",
        "events": "env:KAFKA_URL",
    }
    assert config.connections.file == str(tmp_path / SETTINGS_FILE)


def test_a_missing_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == Config()
    assert config.path is None
    assert (config.spec.store, config.spec.http, config.spec.grace) == (None, None, None)
    assert (config.limits.max_tasks, config.limits.webhook_max_body) == (64, 1024 * 1024)
    assert config.limits.bus_capacity == 1024
    assert dict(config.connections.values) == {}


@pytest.mark.parametrize("text", ["", "# nothing set yet\n", "limits:\nconnections:\n"])
def test_an_empty_file_or_empty_sections_give_the_defaults(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    config = load_config(tmp_path)
    assert config.path == tmp_path / SETTINGS_FILE
    assert config.spec.limits.max_tasks == 64
    assert dict(config.connections.values) == {}


def test_limits_may_set_only_some_keys(tmp_path: Path) -> None:
    write(tmp_path, "limits:\n  webhook_max_body: 2048\n")
    limits = load_config(tmp_path).limits
    assert (limits.max_tasks, limits.webhook_max_body, limits.bus_capacity) == (64, 2048, 1024)


# --- bad input: every problem with its file, line and setting ------------------------------------


def test_an_unknown_top_level_key_lists_the_settings(tmp_path: Path) -> None:
    assert problems(tmp_path, "store: sqlite:///a.db\nstores: x\n") == [
        "pipelines/reactor.yaml:2: stores: unknown setting; reactor.yaml takes store, http,"
        " grace, heartbeat, lease, limits, connections, pools, retention, alerts, alerting,"
        " lineage"
    ]


def test_an_unknown_limit_lists_the_limits(tmp_path: Path) -> None:
    assert problems(tmp_path, "limits:\n  max_tasks: 4\n  max_task: 3\n") == [
        "pipelines/reactor.yaml:3: limits.max_task: unknown setting;"
        " limits takes max_tasks, webhook_max_body, bus_capacity, max_output"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 TB", "'1 TB' is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
        ("lots", "'lots' is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
        ("-5", "a size must be at least 1 byte"),
        ("0", "a size must be at least 1 byte"),
        ("0KiB", "a size must be at least 1 byte"),
        ("true", "True is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
    ],
)
def test_a_bad_size(tmp_path: Path, value: str, message: str) -> None:
    text = f"limits:\n  max_tasks: 2\n  webhook_max_body: {value}\n"
    assert problems(tmp_path, text) == [
        f"pipelines/reactor.yaml:3: limits.webhook_max_body: {message}"
    ]


def test_bad_numbers_and_durations(tmp_path: Path) -> None:
    text = """
    grace: soon
    heartbeat: 0
    lease: 50ms
    limits:
      max_tasks: 0
      bus_capacity: many
    """
    assert problems(tmp_path, text) == [
        "pipelines/reactor.yaml:1: grace: 'soon' is not a duration;"
        " write a number of seconds or 500ms, 10s, 5m, 1h, 1d",
        "pipelines/reactor.yaml:2: heartbeat: Input should be greater than or equal to 0.1",
        "pipelines/reactor.yaml:3: lease: Input should be greater than or equal to 0.1",
        "pipelines/reactor.yaml:5: limits.max_tasks: Input should be greater than or equal to 1",
        "pipelines/reactor.yaml:6: limits.bus_capacity: Input should be a valid integer,"
        " unable to parse string as an integer",
    ]


def test_a_bad_http_address(tmp_path: Path) -> None:
    assert problems(tmp_path, "http: localhost\n") == [
        "pipelines/reactor.yaml:1: http: 'localhost' is not HOST:PORT (e.g. 127.0.0.1:8080)"
    ]


def test_every_bad_connection_is_reported_at_its_own_line(tmp_path: Path) -> None:
    text = """
    connections:
      good: postgresql://db/warehouse
      bare: localhost:5432
      "bad name": kafka://broker:9092
      empty_env: "env:"
      number: 5
    """
    assert problems(tmp_path, text) == [
        "pipelines/reactor.yaml:3: connections.bare: 'localhost:5432' is neither a URL"
        " (scheme://...) nor env:VARIABLE",
        "pipelines/reactor.yaml:4: connections.bad name: a connection name takes letters,"
        " digits, _ . - (and no other)",
        "pipelines/reactor.yaml:5: connections.empty_env: env: needs a variable name"
        " (env:WAREHOUSE_URL)",
        "pipelines/reactor.yaml:6: connections.number: Input should be a valid string",
    ]


def test_connections_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, "connections:\n  - postgresql://db/x\n") == [
        "pipelines/reactor.yaml:1: connections: Input should be a valid dictionary"
    ]


@pytest.mark.parametrize("text", ["- store\n- http\n", "just text\n", "42\n"])
def test_the_file_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert problems(tmp_path, text) == [
        "pipelines/reactor.yaml:1: reactor.yaml must be a mapping of settings"
    ]


def test_invalid_yaml(tmp_path: Path) -> None:
    assert problems(tmp_path, "store: sqlite:///a.db\nlimits: {max_tasks: 3\n") == [
        "pipelines/reactor.yaml:3: invalid YAML: expected ',' or '}', but got '<stream end>'"
    ]


def test_the_path_is_shown_as_given_without_a_display_name(tmp_path: Path) -> None:
    write(tmp_path, "nope: 1\n")
    with pytest.raises(SpecErrorGroup) as caught:
        load_config(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / SETTINGS_FILE}:1: nope: unknown setting")


# --- resolving connections -----------------------------------------------------------------------

CONNECTIONS = Connections(
    {"warehouse": "postgresql://etl@db/warehouse", "events": "env:KAFKA_URL"},
    "pipelines/reactor.yaml",
)


def test_an_inline_url_is_itself() -> None:
    assert CONNECTIONS.resolve("kafka://b:9092", {}) == "kafka://b:9092"
    assert Connections().resolve("postgresql://h/db", {}) == "postgresql://h/db"
    assert CONNECTIONS.knows("kafka://b:9092")


def test_a_name_is_its_url() -> None:
    assert CONNECTIONS.resolve("warehouse", {}) == "postgresql://etl@db/warehouse"
    assert CONNECTIONS.knows("warehouse")


def test_an_env_name_reads_the_variable_when_resolved() -> None:
    env = {"KAFKA_URL": "kafka://broker:9092"}
    assert CONNECTIONS.resolve("events", env) == "kafka://broker:9092"


@pytest.mark.parametrize("env", [{}, {"KAFKA_URL": ""}])
def test_an_env_name_whose_variable_is_unset_or_empty(env: dict[str, str]) -> None:
    assert CONNECTIONS.knows("events")
    with pytest.raises(ConnectorError) as caught:
        CONNECTIONS.resolve("events", env)
    assert str(caught.value) == (
        "connection 'events' reads environment variable KAFKA_URL, which is not set"
    )


def test_an_unknown_name_lists_the_known_ones() -> None:
    assert not CONNECTIONS.knows("warehous")
    with pytest.raises(ConnectorError) as caught:
        CONNECTIONS.resolve("warehous", {})
    assert str(caught.value) == (
        "unknown connection 'warehous': not a URL and not a name under connections:"
        " in pipelines/reactor.yaml (names: events, warehouse)"
    )
    with pytest.raises(ConnectorError) as caught:
        Connections().resolve("warehouse", {})
    assert str(caught.value).endswith("in reactor.yaml (names: none)")


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1, 1),
        (1048576, 1048576),
        ("1048576", 1048576),
        ("10B", 10),
        ("2KB", 2000),
        ("2KiB", 2048),
        ("3MB", 3_000_000),
        ("1MiB", 1024**2),
        (" 1 GB ", 1000**3),
        ("1GiB", 1024**3),
    ],
)
def test_parse_size(value: Any, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1kb", "'1kb' is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
        ("1.5MiB", "'1.5MiB' is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
        ("", "'' is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
        (True, "True is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
        (None, "None is not a size; write bytes (1048576) or 512KiB, 1MiB, 10MB"),
        (0, "a size must be at least 1 byte"),
        (-1, "a size must be at least 1 byte"),
        ("0MiB", "a size must be at least 1 byte"),
    ],
)
def test_parse_size_refuses(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert str(caught.value) == message


# --- pipelines naming connections ----------------------------------------------------------------


class ProbeTriggerSpec(TriggerSpec):
    """A trigger kind with a ``connection:``, as Kafka and table sensors have."""

    on: Literal["probe"]
    connection: str

    has_sensor: ClassVar[bool] = True

    def event_filter(self, trigger_key: str) -> EventFilter:
        return EventFilter("probe.*")


class LoadSpec(TaskSpec):
    """A task type with a ``connection:``."""

    type_key: ClassVar[str] = "load"
    load: str
    connection: str | None = None


class LoadAction:
    def __init__(self, spec: LoadSpec, base_dir: Path) -> None:
        self.spec = spec

    async def execute(self, request: TaskRequest) -> Any:
        return None


def registry() -> Registry:
    made = Registry()
    made.add_trigger(TriggerKind("event", EventTriggerSpec))
    made.add_trigger(TriggerKind("probe", ProbeTriggerSpec))
    made.add_task(TaskKind("load", LoadSpec, LoadAction))
    return made


PROBE = """
name: {name}
triggers:
  - on: probe
    connection: {trigger}
tasks:
  - id: first
    load: orders
  - id: second
    load: orders
    connection: {task}
"""


def test_connections_named_in_reactor_yaml_or_inline_are_accepted(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "connections:\n  warehouse: env:WAREHOUSE_URL\n")
    write(
        folder,
        PROBE.format(name="ok", trigger="warehouse", task="postgresql://db/x"),
        "ok.yaml",
    )
    loaded = load_folder(folder, registry=registry())
    assert loaded.problems == []
    assert list(loaded.pipelines) == ["ok"]
    assert dict(loaded.config.connections.values) == {"warehouse": "env:WAREHOUSE_URL"}


def test_an_unknown_connection_name_is_a_problem_at_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "connections:\n  warehouse: postgresql://db/w\n  events: env:KAFKA_URL\n")
    good = write(folder, PROBE.format(name="good", trigger="warehouse", task="events"), "good.yaml")
    bad = write(folder, PROBE.format(name="bad", trigger="wharehouse", task="evnts"), "bad.yaml")
    loaded = load_folder(folder, registry=registry())
    assert [str(p) for p in loaded.problems] == [
        "pipelines/bad.yaml:4: triggers[0].connection: unknown connection 'wharehouse': write"
        " a URL (scheme://...) or a name under connections: in reactor.yaml"
        " (names: events, warehouse)",
        "pipelines/bad.yaml:10: tasks[1].connection: unknown connection 'evnts': write a URL"
        " (scheme://...) or a name under connections: in reactor.yaml"
        " (names: events, warehouse)",
    ]
    assert list(loaded.pipelines) == ["good"]
    assert loaded.broken == {bad}
    assert good not in loaded.broken


def test_without_reactor_yaml_a_name_is_unknown(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, PROBE.format(name="p", trigger="warehouse", task="kafka://b:9092"), "p.yaml")
    loaded = load_folder(folder, registry=registry())
    assert [str(p) for p in loaded.problems] == [
        "pipelines/p.yaml:4: triggers[0].connection: unknown connection 'warehouse': write a"
        " URL (scheme://...) or a name under connections: in reactor.yaml (names: none)"
    ]


def test_a_broken_reactor_yaml_is_a_problem_of_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "connections:\n  warehouse: postgresql://db/w\nlimits:\n  max_tasks: -1\n")
    write(folder, PROBE.format(name="p", trigger="kafka://b:9092", task="kafka://b:9092"), "p.yaml")
    loaded = load_folder(folder, registry=registry())
    assert [str(p) for p in loaded.problems] == [
        "pipelines/reactor.yaml:4: limits.max_tasks: Input should be greater than or equal to 1"
    ]
    # The pipelines still load; the settings are the defaults until the file is fixed.
    assert list(loaded.pipelines) == ["p"]
    assert loaded.config == Config()


def test_reactor_yaml_is_not_read_as_a_pipeline(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "limits:\n  max_tasks: 2\n")
    loaded = load_folder(folder, registry=registry())
    assert (loaded.problems, loaded.pipelines) == ([], {})
    assert loaded.config.limits.max_tasks == 2
