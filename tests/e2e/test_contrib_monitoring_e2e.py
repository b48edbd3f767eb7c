"""The shipped rules and dashboard query only metrics a real daemon exports.

A daemon runs tasks that call a failing local server (so calls, retries, timeouts-by-scope,
fallbacks and breaker transitions have samples), then its ``/metrics`` is scraped: every
``gladd_*`` name in ``contrib/prometheus/gladd-rules.yml`` and ``contrib/grafana/gladd.json``
must be a sample name in that scrape. A renamed metric fails here, not on an operator's
dashboard.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.e2e.conftest import LoggedGladd, wait_until
from tests.unit.test_contrib_monitoring import dashboard_metric_names, rule_metric_names

pytestmark = pytest.mark.e2e


POLICIES = """
[executor]
retry = "once"
[retry.once]
attempts = 1
deadline = "1h"
[retry.quick]
attempts = 3
base_delay = "10ms"
max_delay = "20ms"
deadline = "10s"
on = ["5xx"]
[breaker.up]
failures = 2
open_for = "1h"
max_open_for = "2h"
[services.up]
retry = "quick"
breaker = "up"
timeout = "2s"
hosts = ["127.0.0.1:{port}"]
"""


def sample_names(body: str) -> set[str]:
    names = set()
    for line in body.splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def test_every_metric_the_rules_and_dashboard_query_is_exported(
    nodes: Callable[[str], LoggedGladd], upstream: int
) -> None:
    wanted = rule_metric_names() | dashboard_metric_names()
    assert len(wanted) >= 30, wanted
    node = nodes("a")
    node.policies.write_text(POLICIES.format(port=upstream))
    node.start_serving()
    for _ in range(3):
        httpx.post(
            f"{node.url}/tasks",
            json={
                "kind": "http.request",
                "payload": {"method": "GET", "url": f"http://127.0.0.1:{upstream}/"},
            },
            timeout=5,
        ).raise_for_status()
    missing = set(wanted)

    def all_exported() -> bool:
        missing.intersection_update(wanted - sample_names(node.get("/metrics").text))
        return not missing

    try:
        wait_until(all_exported, what="every metric the rules and dashboard name", timeout=20)
    except AssertionError:
        raise AssertionError(f"not exported: {sorted(missing)}") from None
