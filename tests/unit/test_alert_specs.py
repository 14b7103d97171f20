"""``alerts:`` and ``alerting:``: what is accepted, and every mistake named at file:line."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from spec_files import load, problems, write

from reactor.alerting.alerter import routes_of
from reactor.alerting.anomaly import duration_anomaly, rate_drop, robust_z
from reactor.alerting.specs import AlertSpec
from reactor.config import SETTINGS_FILE, load_config
from reactor.errors import SpecErrorGroup
from reactor.pipelines import load_folder

PIPELINE = """
name: orders
alerts:
{alerts}
tasks:
  - id: a
    shell: echo hi
"""


def pipeline_problems(tmp_path: Path, alerts: str) -> list[str]:
    return problems(tmp_path, PIPELINE.format(alerts=alerts))


def settings_problems(tmp_path: Path, text: str) -> list[str]:
    write(tmp_path, SETTINGS_FILE, text)
    with pytest.raises(SpecErrorGroup) as caught:
        load_config(tmp_path, display=SETTINGS_FILE)
    return [str(p) for p in caught.value.problems]


def test_every_kind_and_destination_is_read(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        PIPELINE.format(
            alerts="""
  - {on: failure, webhook: "https://hooks.example/alerts"}
  - {on: recovery, slack: env:SLACK_URL}
  - {on: duration, over: 30m, slack: "{{ env.SLACK_URL }}", cooldown: 1h}
  - {on: stale, over: 1d, email: {to: ops@example.com, subject: "[etl]"}}
  - {on: sensor_unhealthy, webhook: env:HOOK, group_window: 0}
  - {on: correlation_timeout, webhook: env:HOOK}
  - {on: anomaly, email: {to: [a@example.com, b@example.com], from: etl@example.com}}
"""
        ),
    )
    alerts: list[AlertSpec] = pipeline.spec.alerts
    assert [a.on for a in alerts] == [
        "failure",
        "recovery",
        "duration",
        "stale",
        "sensor_unhealthy",
        "correlation_timeout",
        "anomaly",
    ]
    assert [a.destination for a in alerts] == [
        "webhook",
        "slack",
        "slack",
        "email",
        "webhook",
        "webhook",
        "email",
    ]
    assert (alerts[2].over, alerts[2].cooldown, alerts[3].over) == (1800.0, 3600.0, 86400.0)
    assert alerts[3].email is not None and alerts[3].email.to == ["ops@example.com"]
    assert alerts[6].email is not None and alerts[6].email.from_ == "etl@example.com"


def test_alert_mistakes_are_named_at_their_line(tmp_path: Path) -> None:
    found = pipeline_problems(
        tmp_path,
        """
  - {on: failure}
  - {on: failing, webhook: "https://x.example"}
  - {on: duration, webhook: "https://x.example"}
  - {on: failure, over: 5m, webhook: "https://x.example"}
  - {on: failure, webhook: "ftp://x.example"}
  - {on: failure, webhook: "https://x.example", slack: env:S}
  - {on: failure, email: {to: []}}
  - {on: failure, email: {to: nobody}}
  - {on: failure, webhook: env:A, cooldown: 0}
  - {on: failure, webhook: env:A, channel: ops}
""",
    )
    assert found == [
        "p.yaml:4: alerts[0]: an alert needs exactly one destination: webhook:, slack: or email:",
        "p.yaml:5: alerts[1].on: Input should be 'failure', 'recovery', 'duration', 'stale',"
        " 'sensor_unhealthy', 'correlation_timeout' or 'anomaly', got 'failing'",
        "p.yaml:6: alerts[2]: on: duration needs over: (how long a run may run, e.g. 30m)",
        "p.yaml:7: alerts[3]: over: belongs to on: duration and on: stale, not on: failure",
        "p.yaml:8: alerts[4].webhook: 'ftp://x.example' is not an http(s) URL; write"
        " https://..., env:VARIABLE or {{ env.VARIABLE }}",
        "p.yaml:9: alerts[5]: an alert needs exactly one destination: webhook:, slack: or"
        " email: (this one has webhook, slack)",
        "p.yaml:10: alerts[6].email.to: List should have at least 1 item after validation, not 0",
        "p.yaml:11: alerts[7].email.to: 'nobody' is not an email address (name@example.com)",
        "p.yaml:12: alerts[8].cooldown: Input should be greater than 0",
        "p.yaml:13: alerts[9].channel: unknown field",
    ]


def test_alerting_settings_are_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        SETTINGS_FILE,
        """
        alerts:
          - {on: failure, webhook: env:ALERT_URL}
        alerting:
          smtp: {host: mail.example, port: 587, user: etl, password: env:SMTP_PASSWORD,
                 starttls: true, from: reactor@example.com}
          group_window: 10m
          cooldown: 1h
          quiet_hours: {from: "22:00", to: "07:00", timezone: Europe/Amsterdam}
          base_url: https://reactor.example
          anomaly: {runs: 30, threshold: 4}
        """,
    )
    spec = load_config(tmp_path).spec
    assert [a.on for a in spec.alerts] == ["failure"]
    alerting = spec.alerting
    assert alerting.smtp is not None
    assert (alerting.smtp.host, alerting.smtp.port, alerting.smtp.starttls) == (
        "mail.example",
        587,
        True,
    )
    assert (alerting.group_window, alerting.cooldown) == (600.0, 3600.0)
    assert alerting.quiet_hours is not None
    assert (alerting.quiet_hours.from_, alerting.quiet_hours.to) == (time(22), time(7))
    assert (alerting.anomaly.runs, alerting.anomaly.threshold) == (30, 4.0)


def test_alerting_mistakes_are_named_at_their_line(tmp_path: Path) -> None:
    assert settings_problems(
        tmp_path,
        """
        alerting:
          smtp: {host: mail.example, port: 70000, password: hunter2, user: me, tls: true}
          quiet_hours: {from: "25:00", to: "07:00", timezone: Mars/Olympus}
          cooldown: soon
          anomaly: {runs: 2}
        """,
    ) == [
        "reactor.yaml:2: alerting.smtp.port: Input should be less than or equal to 65535",
        "reactor.yaml:2: alerting.smtp.password: password: write env:VARIABLE, so the secret"
        " never sits in a file",
        "reactor.yaml:2: alerting.smtp.tls: unknown setting; alerting.smtp takes host, port,"
        " user, password, starttls, from, timeout",
        "reactor.yaml:3: alerting.quiet_hours.from: '25:00' is not a time of day; write HH:MM,"
        ' e.g. "22:00"',
        "reactor.yaml:3: alerting.quiet_hours.timezone: unknown timezone 'Mars/Olympus' (an"
        " IANA name, e.g. Europe/Amsterdam)",
        "reactor.yaml:4: alerting.cooldown: 'soon' is not a duration; write a number of"
        " seconds or 500ms, 10s, 5m, 1h, 1d",
        "reactor.yaml:5: alerting.anomaly.runs: Input should be greater than or equal to 5",
    ]


def test_email_alerts_need_an_smtp_server(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, SETTINGS_FILE, "alerts:\n  - {on: failure, email: {to: ops@example.com}}\n")
    write(
        folder,
        "orders.yaml",
        PIPELINE.format(alerts="  - {on: stale, over: 1h, email: {to: ops@example.com}}"),
    )
    loaded = load_folder(folder)
    assert [str(p) for p in loaded.problems] == [
        "pipelines/reactor.yaml:2: alerts[0].email: email: needs alerting: {smtp: {host:"
        " ...}} in reactor.yaml",
        "pipelines/orders.yaml:3: alerts[0].email: email: needs alerting: {smtp: {host:"
        " ...}} in reactor.yaml",
    ]
    assert loaded.pipelines == {}


def test_a_pipeline_without_alerts_takes_the_settings_alerts(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, SETTINGS_FILE, "alerts:\n  - {on: failure, webhook: env:ALERT_URL}\n")
    write(folder, "a.yaml", "name: a\ntasks: [{id: t, shell: echo}]\n")
    write(folder, "b.yaml", PIPELINE.format(alerts="  - {on: anomaly, slack: env:S}"))
    loaded = load_folder(folder)
    assert loaded.problems == []
    config = loaded.config.spec
    routes = routes_of(loaded.pipelines, config.alerts, config.alerting)
    assert sorted((r.id, r.on, r.cooldown) for r, _ in routes.values()) == [
        ("a#reactor.yaml alerts[0]", "failure", 1800.0),
        ("orders#alerts[0]", "anomaly", 1800.0),
    ]


# --- anomalies ------------------------------------------------------------------------------------


def test_robust_z_ignores_outliers_in_the_history() -> None:
    history = [60.0] * 10 + [61.0] * 9 + [3600.0]  # one old outlier does not widen the scale
    z, median, scale = robust_z(history, 120.0, 0.1)
    assert (median, scale) == (60.5, pytest.approx(0.7413))
    assert z > 50


def test_a_run_far_longer_or_shorter_than_usual_is_an_anomaly() -> None:
    history = [60.0 + (i % 5) for i in range(20)]
    assert duration_anomaly(history[:19], 600.0, min_runs=20, threshold=5) is None
    assert duration_anomaly(history, 70.0, min_runs=20, threshold=5) is None
    why = duration_anomaly(history, 600.0, min_runs=20, threshold=5)
    assert why is not None and why.startswith("ran 10m, far longer than usual: median 62s")
    assert "of the last 20 runs" in why
    shorter = duration_anomaly(history, 1.0, min_runs=20, threshold=5)
    assert shorter is not None and "far shorter" in shorter


def test_an_event_rate_far_below_usual_is_an_anomaly() -> None:
    history = [100, 96, 104, 98, 102, 99, 101, 97, 103, 100, 95, 105]
    assert rate_drop(history, 90, min_windows=12, threshold=5) is None
    assert rate_drop(history[:11], 0, min_windows=12, threshold=5) is None
    why = rate_drop(history, 10, min_windows=12, threshold=5)
    assert why is not None and why.startswith("10 events in the last window, usually 100")
    # A trigger that usually sees almost nothing: silence is no news.
    assert rate_drop([1, 0, 2, 1, 0, 1, 3, 0, 1, 2, 1, 0], 0, min_windows=12, threshold=5) is None
    # More than usual is not a drop.
    assert rate_drop(history, 1000, min_windows=12, threshold=5) is None
