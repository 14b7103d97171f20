"""Lineage without a service: asset names, declared inputs/outputs, ``on: asset``,
reporting, OpenLineage events and the ``lineage:`` settings."""

from __future__ import annotations

import json
import re
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from reactor.asset_trigger import AssetTriggerSpec
from reactor.assets import (
    ASSET_EVENT_SOURCE,
    ASSET_EVENT_TYPE,
    DeclaredAssets,
    asset_event,
    normalize_asset,
    normalize_pattern,
    template_pattern,
)
from reactor.clock import SystemClock
from reactor.config import load_config
from reactor.errors import ActionError, ConnectorError, SpecErrorGroup
from reactor.events import Event
from reactor.lineage import LINEAGE_VARIABLE, TaskLineage, lineage_env, report
from reactor.openlineage import (
    SCHEMA_URL,
    OpenLineageEmitter,
    OpenLineageSpec,
    attempt_run_id,
    dataset,
    run_event,
)
from reactor.pipelines import load_folder, load_pipeline
from reactor.rules import RuleEngine
from reactor.store.records import RunRecord

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("postgres://warehouse/public.orders", "postgres://warehouse/public.orders"),
        ("postgresql://Warehouse/Public.Orders", "postgres://warehouse/public.orders"),
        ("POSTGRES://user:secret@db.example.com:5432/shop/", "postgres://db.example.com:5432/shop"),
        ("file:///data/orders.csv", "file:///data/orders.csv"),
        ("/data//in/../orders.csv", "file:///data/orders.csv"),
        ("file://localhost/data/./orders.csv", "file:///data/orders.csv"),
        ("kafka://Cluster/Orders", "kafka://cluster/Orders"),
        ("s3://bucket/raw//2026/Orders.parquet", "s3://bucket/raw/2026/Orders.parquet"),
        ("orders_clean", "orders_clean"),
        ("  warehouse.orders ", "warehouse.orders"),
        ("reports/daily/", "reports/daily"),
    ],
)
def test_assets_have_one_canonical_spelling(written: str, canonical: str) -> None:
    assert normalize_asset(written) == canonical
    assert normalize_asset(canonical) == canonical


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("", "an asset cannot be empty"),
        ("my table", "asset 'my table' contains whitespace"),
        ("file://data.csv", "a file URI needs an absolute path, file:///data/orders.csv"),
        ("file:///data/*.csv", "contains * ? or [: wildcards belong to on: asset"),
        ("kafka:///topic", "kafka:// needs a host, bucket, cluster or connection name"),
        ("s3://bucket/key#part", "an asset URI has no query (?...) or fragment (#...)"),
        ("warehouse:orders", "write a URI as scheme://..."),
        ("-orders", "a bare name takes letters, digits, _ . - /"),
        ("1x://host/path", "'1x' is not a URI scheme"),
        ("postgres://host:99999/db", "Port out of range"),
    ],
)
def test_malformed_assets_are_refused_saying_why(written: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_asset(written)


def test_patterns_allow_wildcards_and_templates_become_patterns() -> None:
    assert normalize_pattern("postgresql://WH/public.*") == "postgres://wh/public.*"
    assert normalize_pattern("file:///in/orders-*.csv") == "file:///in/orders-*.csv"
    assert template_pattern("file:///in/{{ params.day }}/orders.csv") == "file:///in/*/orders.csv"
    assert template_pattern("{{ params.target }}") == "*"
    assert template_pattern("postgresql://WH/Public.Orders") == "postgres://wh/public.orders"


def test_declared_assets_render_per_attempt() -> None:
    declared = DeclaredAssets(
        ["postgres://wh/public.orders", "file://{{ params.path }}"],
        ["{{ params.outs }}", "s3://b/{{ item }}"],
    )
    scope = {"params": {"path": "/in//a.csv", "outs": ["x", "y/"]}, "item": "k"}
    assert declared.render(scope) == (
        ["postgres://wh/public.orders", "file:///in/a.csv"],
        ["x", "y", "s3://b/k"],
    )
    with pytest.raises(
        ValueError, match=re.escape("'file://{{ params.path }}' rendered asset 'file://rel")
    ):
        declared.render({**scope, "params": {"path": "rel", "outs": []}})


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_validate_names_each_bad_asset_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        name: bad
        triggers:
          - on: asset
            assets: ["postgres://wh/ok", "file://relative.csv"]
        tasks:
          - id: load
            shell: echo hi
            inputs:
              - orders
              - "my orders"
            outputs: "{{ broken"
          - id: each
            for_each: [1, 2]
            task:
              shell: echo {{ item }}
              outputs: ["kafka:///t"]
        """,
    )
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path, display="bad.yaml")
    shown = [str(p) for p in caught.value.problems]
    assert shown == [
        "bad.yaml:4: triggers[0].assets[1]: asset 'file://relative.csv': a file URI needs an"
        " absolute path, file:///data/orders.csv (three slashes)",
        "bad.yaml:10: tasks[0].inputs[1]: asset 'my orders' contains whitespace",
    ]
    path.write_text(path.read_text().replace('"my orders"', "more").replace("relative", "/abs"))
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path, display="bad.yaml")
    shown = [str(p) for p in caught.value.problems]
    assert len(shown) == 2
    assert shown[0].startswith("bad.yaml:11: tasks[0].outputs[0]: unexpected end of template")
    assert shown[1] == (
        "bad.yaml:16: tasks[1].task.outputs[0]: asset 'kafka:///t': kafka:// needs a host,"
        " bucket, cluster or connection name (kafka://NAME/...)"
    )


def test_on_asset_without_assets_needs_declared_inputs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "lonely.yaml",
        """
        name: lonely
        triggers:
          - on: asset
        tasks:
          - id: work
            shell: echo hi
        """,
    )
    with pytest.raises(SpecErrorGroup) as caught:
        load_pipeline(path, display="lonely.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "lonely.yaml:3: triggers[0]: on: asset without assets: fires when an input of this"
        " pipeline's tasks is written, but no task declares inputs:; add assets: or inputs:"
    ]


def updated(asset: str, pipeline: str = "upstream") -> Event:
    return asset_event(asset, pipeline=pipeline, run_id="r1", task_id="t", attempt=1, at=AT)


def test_on_asset_fires_for_matching_writes_of_other_pipelines(tmp_path: Path) -> None:
    write(
        tmp_path,
        "named.yaml",
        """
        name: named
        triggers:
          - on: asset
            assets: ["postgresql://WH/public.*", orders_clean]
        tasks:
          - id: work
            shell: echo hi
            outputs: [postgres://wh/public.summary]
        """,
    )
    write(
        tmp_path,
        "reader.yaml",
        """
        name: reader
        params:
          day: {type: string, default: "2026-11-26"}
        triggers:
          - on: asset
        tasks:
          - id: read
            shell: echo hi
            inputs: ["file:///in/{{ params.day }}/orders.csv", "kafka://c/orders"]
        """,
    )
    loaded = load_folder(tmp_path)
    assert loaded.problems == []
    engine = RuleEngine(loaded.pipelines.values())

    def fired(event: Event) -> list[str]:
        return sorted(d.pipeline for d in engine.evaluate(event, {}) if d.fired)

    assert fired(updated("postgres://wh/public.orders")) == ["named"]
    assert fired(updated("orders_clean")) == ["named"]
    assert fired(updated("file:///in/2026-11-27/orders.csv")) == ["reader"]
    assert fired(updated("kafka://c/orders")) == ["reader"]
    assert fired(updated("kafka://c/payments")) == []
    # A pipeline's own write never starts it: its output matches its own trigger.
    assert fired(updated("postgres://wh/public.summary", pipeline="named")) == []
    assert fired(updated("postgres://wh/public.summary", pipeline="other")) == ["named"]
    # Asset events are internal: a broad on: event glob does not see them.
    assert updated("x").type == ASSET_EVENT_TYPE
    assert updated("x").source == ASSET_EVENT_SOURCE


def test_asset_trigger_spec_reads_one_asset_as_a_list() -> None:
    spec = AssetTriggerSpec(on="asset", assets="Kafka://C/t")  # type: ignore[arg-type]
    assert spec.assets == ["kafka://c/t"]
    bound = spec.bound("p", ["ignored"])
    assert bound.patterns == ("kafka://c/t",)
    assert bound.accepts(updated("kafka://c/t")) is True


@pytest.mark.anyio
async def test_report_adds_to_the_running_attempt_and_is_a_no_op_outside() -> None:
    assert report(outputs=["x"]) is False
    assert lineage_env() == {}
    lineage = TaskLineage(["a"], [])

    async def task() -> int:
        assert report(inputs=["postgresql://WH/T", "a"], outputs="file:///o.csv") is True
        await anyio.to_thread.run_sync(lambda: report(outputs=["kafka://c/t"]))
        with pytest.raises(ValueError, match="contains whitespace"):
            report(outputs=["bad name"])
        return 7

    assert await lineage.run(task) == 7
    assert lineage.inputs == ["a", "postgres://wh/t"]
    assert lineage.outputs == ["file:///o.csv", "kafka://c/t"]


@pytest.mark.anyio
async def test_a_child_process_reports_through_the_lineage_file() -> None:
    lineage = TaskLineage()
    paths: list[str] = []

    async def child() -> None:
        env = lineage_env()
        paths.append(env[LINEAGE_VARIABLE])
        assert lineage_env() == env  # one file per attempt, however many processes
        Path(env[LINEAGE_VARIABLE]).write_text(json.dumps({"inputs": ["in_a"]}))

    await lineage.run(child)
    assert lineage.inputs == ["in_a"]
    assert not Path(paths[0]).exists()

    bad = TaskLineage()

    async def writes_junk() -> None:
        Path(lineage_env()[LINEAGE_VARIABLE]).write_text('{"outputs": "x", "extra": 1}')

    with pytest.raises(ActionError, match=r'\$REACTOR_LINEAGE: write a JSON object \{"inputs"'):
        await bad.run(writes_junk)


def test_report_in_a_child_merges_into_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lineage.json"
    monkeypatch.setenv(LINEAGE_VARIABLE, str(path))
    assert report(inputs=["a"]) is True
    assert report(inputs=["a", "b"], outputs=["/out.csv"]) is True
    assert json.loads(path.read_text()) == {"inputs": ["a", "b"], "outputs": ["file:///out.csv"]}


def test_openlineage_run_events_follow_the_spec() -> None:
    run = RunRecord("r1", "k", "orders", "v", "running", {}, None, [], AT)
    event = run_event(
        "COMPLETE",
        at=AT,
        run=run,
        task_id="each[3]",
        attempt=2,
        inputs=["postgres://wh/public.orders", "raw_orders"],
        outputs=["file:///data/out.csv"],
        namespace="reactor",
        error=None,
    )
    assert event["eventType"] == "COMPLETE"
    assert event["eventTime"] == "2026-11-26T12:00:00+00:00"
    assert event["schemaURL"] == SCHEMA_URL
    assert event["run"]["runId"] == attempt_run_id("r1", "each[3]", 2)
    assert uuid.UUID(event["run"]["runId"]).version == 5
    assert attempt_run_id("r1", "each[3]", 2) != attempt_run_id("r1", "each[3]", 3)
    assert event["job"] == {"namespace": "reactor", "name": "orders.each", "facets": {}}
    assert event["inputs"] == [
        {"namespace": "postgres://wh", "name": "public.orders", "facets": {}},
        {"namespace": "reactor", "name": "raw_orders", "facets": {}},
    ]
    assert event["outputs"] == [{"namespace": "file", "name": "/data/out.csv", "facets": {}}]
    assert event["run"]["facets"]["parent"]["job"] == {"namespace": "reactor", "name": "orders"}
    failed = run_event(
        "FAIL", at=AT, run=run, task_id="t", attempt=1, inputs=[], outputs=[],
        namespace="n", error="boom",
    )  # fmt: skip
    assert failed["run"]["facets"]["errorMessage"]["message"] == "boom"
    assert dataset("s3://bucket/raw/x.parquet", "n") == {
        "namespace": "s3://bucket",
        "name": "raw/x.parquet",
        "facets": {},
    }


def test_lineage_settings_are_checked_at_file_line(tmp_path: Path) -> None:
    (tmp_path / "reactor.yaml").write_text(
        textwrap.dedent(
            """
            lineage:
              openlineage:
                url: localhost:5000
                api_key: plain-secret
                colour: blue
            """
        ).lstrip()
    )
    with pytest.raises(SpecErrorGroup) as caught:
        load_config(tmp_path, display="reactor.yaml")
    shown = [str(p) for p in caught.value.problems]
    assert shown == [
        "reactor.yaml:3: lineage.openlineage.url: 'localhost:5000' is not an http:// or"
        " https:// URL",
        "reactor.yaml:4: lineage.openlineage.api_key: api_key is read from the environment:"
        " write env:VARIABLE (the key itself never sits in reactor.yaml)",
        "reactor.yaml:5: lineage.openlineage.colour: unknown setting; lineage.openlineage takes"
        " url, namespace, api_key, timeout, retries, max_queue",
    ]
    (tmp_path / "reactor.yaml").write_text(
        "lineage:\n  openlineage: {url: 'http://127.0.0.1:5000/', api_key: env:OL_KEY}\n"
    )
    spec = load_config(tmp_path).spec.lineage.openlineage
    assert spec is not None
    assert spec.url == "http://127.0.0.1:5000"
    assert spec.namespace == "reactor"


def test_a_full_queue_drops_new_events_without_waiting(caplog: pytest.LogCaptureFixture) -> None:
    spec = OpenLineageSpec(url="http://127.0.0.1:9", max_queue=2)
    emitter = OpenLineageEmitter(spec, {}, SystemClock())
    run = RunRecord("r1", "k", "orders", "v", "running", {}, None, [], AT)
    for attempt in (1, 2, 3):
        emitter.attempt_started(run, "load", attempt, TaskLineage(), AT)
    assert emitter.dropped == 1
    assert "OpenLineage event START of orders.load dropped (1 so far): the queue of 2" in (
        caplog.text
    )


def test_an_api_key_whose_variable_is_missing_is_refused() -> None:
    spec = OpenLineageSpec(url="http://127.0.0.1:9", api_key="env:NO_SUCH_KEY")
    with pytest.raises(ConnectorError, match="reads environment variable NO_SUCH_KEY"):
        OpenLineageEmitter(spec, {}, SystemClock())
