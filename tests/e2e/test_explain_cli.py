"""``reactor explain`` against a real ``reactor serve``, and ``reactor test-trigger`` offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from explain_pipelines import BILLING, ORDERS
from helpers import wait_for

from .commands import free_port, run_reactor

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

RUN = re.compile(r"^run ([0-9a-f]{32})$", re.MULTILINE)


@pytest.fixture
def pipelines(folder) -> Path:
    return folder("pipelines", {"orders.yaml": ORDERS, "billing.yaml": BILLING})


@pytest.fixture
async def url(serve, pipelines: Path, tmp_path: Path) -> str:
    served = serve(pipelines, "--store", f"sqlite:///{tmp_path / 'state.db'}")
    await wait_for(served.healthy, timeout=30, message="reactor serve to be healthy")
    return served.url


def publish(url: str, type_: str, data: str, *args: str) -> list[str]:
    result = run_reactor("publish", type_, "--data", data, "--url", url, *args)
    assert result.code == 0, result.err
    return RUN.findall(result.out)


async def test_explain_an_event_per_trigger(url: str) -> None:
    run_ids = publish(url, "orders.paid", '{"amount": 500}', "--source", "shop/eu", "--id", "e1")
    assert len(run_ids) == 2
    publish(url, "orders.paid", '{"amount": 5}', "--source", "till/1", "--id", "e2")

    fired = run_reactor("explain", "e1", "--url", url)
    assert fired.code == 0, fired.err
    lines = fired.out.splitlines()
    assert lines[0] == "event e1 from shop/eu, type orders.paid"
    assert lines[1].startswith("received ") and ", evaluated " in lines[1]
    table = "\n".join(lines[2:])
    assert re.search(r"orders/big\s+.*fired\s+.*matched params=\{\"amount\": 500\}", table)
    assert "type 'orders.paid' does not match 'billing.*' (computed now)" in table
    assert set(RUN.findall(fired.out)) == set(run_ids)
    for run_id in run_ids:  # the whole id, to copy
        assert re.search(rf"\s{run_id}\s", table)

    small = run_reactor("explain", "e2", "--url", url)
    assert small.code == 0, small.err
    assert re.search(r"orders/big\s+.*condition_false\s+.*event\.data\.amount = 5", small.out)
    assert "source 'till/1' does not match 'shop/*' (computed now)" in small.out
    assert small.out.splitlines()[-1] == "no run started for this event"

    as_json = run_reactor("explain", "e2", "--json", "--url", url)
    assert as_json.code == 0, as_json.err
    found = json.loads(as_json.out)
    assert found["event"]["id"] == "e2"
    assert [e["outcome"] for e in found["triggers"]] == [
        "not_candidate",
        "condition_false",
        "not_candidate",
    ]


async def test_explain_an_id_two_sources_share(url: str) -> None:
    publish(url, "orders.paid", '{"amount": 1}', "--source", "shop/eu", "--id", "same")
    publish(url, "billing.due", "{}", "--source", "ledger", "--id", "same")
    first = run_reactor("explain", "same", "--url", url)
    assert first.code == 0, first.err
    assert first.out.splitlines()[0] == "event same from shop/eu, type orders.paid"
    assert (
        "1 other event(s) share this id (sources: ledger); pass --source to pick another"
        in first.out
    )
    chosen = run_reactor("explain", "same", "--source", "ledger", "--url", url)
    assert chosen.code == 0, chosen.err
    assert chosen.out.splitlines()[0] == "event same from ledger, type billing.due"


async def test_explain_why_a_pipeline_did_not_run(url: str) -> None:
    run_ids = publish(url, "orders.paid", '{"amount": 900}', "--source", "shop/eu")
    publish(url, "orders.paid", '{"amount": 3}', "--id", "small")
    publish(url, "billing.due", "{}")
    result = run_reactor("explain", "--pipeline", "orders", "--since", "30m", "--url", url)
    assert result.code == 0, result.err
    out = result.out
    assert out.splitlines()[0].startswith("pipeline orders, last 30m (")
    assert (
        "  trigger orders/big (on event): type 'orders.paid', when 'event.data.amount > 100'" in out
    )
    assert "reached its triggers: 2;" in out
    assert re.search(r"^  fired: 2$", out, re.MULTILINE)
    assert re.search(r"^  condition_false: 1$", out, re.MULTILINE)
    assert re.search(r"event small \(orders\.paid\) orders/big: when: .* is false", out)
    assert re.search(r"events none of its triggers could match: \d+ \(.*billing\.due 1", out)
    assert re.search(r"^runs: 2", out, re.MULTILINE)
    for run_id in run_ids:
        assert f"run {run_id} " in out

    as_json = run_reactor("explain", "--pipeline", "billing", "--json", "--url", url)
    assert as_json.code == 0, as_json.err
    found = json.loads(as_json.out)
    assert found["outcomes"]["fired"]["count"] == 1
    assert found["runs"]["count"] == 1


async def test_explain_bad_input(url: str) -> None:
    unknown = run_reactor("explain", "nope", "--url", url)
    assert unknown.code == 1
    assert unknown.err.strip() == "error: 404: no event 'nope'"
    pipeline = run_reactor("explain", "--pipeline", "nope", "--url", url)
    assert pipeline.code == 1
    assert pipeline.err.strip() == "error: 404: no pipeline 'nope' (loaded: billing, orders)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: give an EVENT_ID or --pipeline P (one of them)"),
        (("e1", "--pipeline", "orders"), "error: give an EVENT_ID or --pipeline P (one of them)"),
        (
            ("--pipeline", "orders", "--source", "x"),
            "error: --source goes with an EVENT_ID, not with --pipeline",
        ),
        (
            ("--pipeline", "orders", "--since", "soon"),
            "error: --since: 'soon' is not a duration; write a number of seconds or 500ms,"
            " 10s, 5m, 1h, 1d",
        ),
    ],
)
def test_explain_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = run_reactor("explain", *args, "--url", f"http://127.0.0.1:{free_port()}")
    assert result.code == 2
    assert result.err.strip() == message


def test_explain_without_a_service() -> None:
    where = f"http://127.0.0.1:{free_port()}"
    result = run_reactor("explain", "e1", "--url", where)
    assert result.code == 1
    assert result.err.startswith(f"error: cannot reach Reactor at {where}")


# test-trigger: no service


def write_event(tmp_path: Path, body: object, name: str = "event.json") -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    return path


def test_trigger_fires(pipelines: Path, tmp_path: Path) -> None:
    event = write_event(
        tmp_path, {"type": "orders.paid", "source": "shop/eu", "data": {"amount": 250}}
    )
    result = run_reactor("test-trigger", "orders", "--event", str(event), "--dir", str(pipelines))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == (
        "event orders.paid from shop/eu against orders (2 trigger(s)); nothing is started"
    )
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if "│" in line]
    assert cells == [
        ["orders/big", "yes", "fired", "matched", '{"amount": 250}'],
        ["orders/shop", "yes", "fired", "matched", '{"amount": 0}'],
    ]
    assert lines[-1] == "fired: orders/big, orders/shop"
    assert not (pipelines / ".reactor").exists()


def test_trigger_fires_nothing(pipelines: Path, tmp_path: Path) -> None:
    event = write_event(tmp_path, {"type": "orders.paid", "data": {"amount": 5}})
    result = run_reactor(
        "test-trigger", "orders", "--event", str(event), "--dir", str(pipelines), "--json"
    )
    assert result.code == 1, result.err
    found = json.loads(result.out)
    assert found["fired"] == 0
    assert found["event"]["source"] == "reactor/cli"
    big, shop = found["triggers"]
    assert big["outcome"] == "condition_false"
    assert big["values"] == {"event.data.amount": 5}
    assert shop == {
        "trigger": "orders/shop",
        "pipeline": "orders",
        "candidate": False,
        "fired": False,
        "outcome": "not_candidate",
        "reason": "source 'reactor/cli' does not match 'shop/*'",
    }
    plain = run_reactor("test-trigger", "orders", "--event", str(event), "--dir", str(pipelines))
    assert plain.code == 1
    assert plain.out.splitlines()[-1] == "no trigger fired"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "error: --event {file}: no such file"),
        ("{not json", "error: --event {file} is not JSON: Expecting property name enclosed in"),
        ("[1, 2]", "error: --event {file} is not a CloudEvent: an event must be a JSON object"),
        (
            '{"data": {}}',
            "error: --event {file} is not a CloudEvent: 'type' is required and must be a"
            " non-empty string",
        ),
    ],
)
def test_trigger_bad_event_file(
    pipelines: Path, tmp_path: Path, body: str | None, message: str
) -> None:
    path = tmp_path / "event.json" if body is None else write_event(tmp_path, body)
    result = run_reactor("test-trigger", "orders", "--event", str(path), "--dir", str(pipelines))
    assert result.code == 2
    assert result.err.strip().startswith(message.format(file=path))
    assert result.out == ""


def test_trigger_unknown_pipeline(pipelines: Path, tmp_path: Path) -> None:
    event = write_event(tmp_path, {"type": "orders.paid"})
    result = run_reactor("test-trigger", "nope", "--event", str(event), "--dir", str(pipelines))
    assert result.code == 2
    assert result.err.strip() == (
        f"error: no valid pipeline 'nope' in {pipelines} (found: billing, orders)"
    )
