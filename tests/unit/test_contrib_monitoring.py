"""The shipped monitoring in ``contrib/``: the Prometheus rules pass ``promtool check rules``
and their own ``promtool test rules`` unit tests, and the Grafana dashboard is a current-schema
dashboard whose every query is valid PromQL over gladd's metrics.

That each metric named here is one the daemon really exports is checked against a real
daemon's scrape in ``tests/e2e/test_contrib_monitoring_e2e.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.unit.observe._promtool import promtool_path

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
RULES = CONTRIB / "prometheus" / "gladd-rules.yml"
RULE_TESTS = CONTRIB / "prometheus" / "gladd-rules.test.yml"
DASHBOARD = CONTRIB / "grafana" / "gladd.json"

# Every metric gladd exports starts with gladd_; labels and PromQL words never do.
METRIC = re.compile(r"\bgladd_[a-z0-9_]+\b")


def promtool(*args: str, cwd: Path) -> str:
    """Runs promtool; fails (in CI) or skips (elsewhere) when it is not installed."""
    done = subprocess.run(
        [promtool_path(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    return report


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def metric_names(text: str) -> set[str]:
    return set(METRIC.findall(text))


def rule_metric_names() -> set[str]:
    return metric_names(RULES.read_text())


def dashboard_metric_names() -> set[str]:
    return {name for _, expr in panel_queries() for name in metric_names(expr)}


def test_the_rules_file_passes_promtool_check_rules() -> None:
    report = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert "SUCCESS" in report, report


def test_the_rules_unit_tests_pass() -> None:
    report = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert "SUCCESS" in report, report


def test_every_alert_has_a_severity_a_summary_and_a_unit_test() -> None:
    text = RULES.read_text()
    alerts = re.findall(r"^\s+- alert: (\w+)$", text, re.MULTILINE)
    assert len(alerts) >= 12, alerts
    tests = RULE_TESTS.read_text()
    fired = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests))
    silent = set(re.findall(r"alertname: (\w+), exp_alerts: \[\]", tests))
    assert set(alerts) - fired == set(), "alerts no test makes fire"
    assert set(alerts) - silent == set(), "alerts no test checks stay silent"
    assert text.count("severity:") == len(alerts)
    assert text.count("summary:") == len(alerts)


def test_the_dashboard_is_current_schema_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] == "gladd-overview"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_dashboard_covers_what_operators_watch() -> None:
    names = dashboard_metric_names()
    for needed in (
        "gladd_tasks",  # tasks by state
        "gladd_task_outcomes_total",  # throughput
        "gladd_task_duration_seconds_bucket",  # attempt durations by kind
        "gladd_retries_total",
        "gladd_retried_calls_total",
        "gladd_breaker_state",
        "gladd_breakers_open",
        "gladd_db_pool_utilization_ratio",
        "gladd_reloads_total",
        "gladd_event_loop_lag_seconds_bucket",
    ):
        assert needed in names, needed


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool has no "check this expression": each query becomes a recording rule, which
    # `check rules` parses. Grafana's variables are given the values Grafana would substitute.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, (title, expr) in enumerate(panel_queries()):
        concrete = expr.replace("$__rate_interval", "1m").replace("$job", "gladd")
        assert "$" not in concrete, f"{title}: unknown variable in {expr}"
        lines.append(f"      - record: dashboard:query_{index}")
        lines.append(f"        expr: {json.dumps(concrete)}")
    (tmp_path / "queries.yml").write_text("\n".join(lines) + "\n")
    report = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert f"SUCCESS: {len(panel_queries())} rules found" in report, report
