"""Seeing inside a real ``gladd run``: /health, /metrics (promtool-valid) and ``gladd status``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e._proxy import TcpProxy
from tests.e2e.conftest import LoggedGladd, free_port, run_cli, wait_until
from tests.unit.observe._promtool import promtool_check

pytestmark = pytest.mark.e2e

QUICK_CHECKS = '\n[event_loop]\ninterval = "100ms"\n'


def health(node: LoggedGladd) -> dict[str, Any]:
    return node.get("/health").json()  # type: ignore[no-any-return]


def status_is(node: LoggedGladd, expected: str) -> Callable[[], bool]:
    return lambda: health(node)["status"] == expected


def status(node: LoggedGladd, *args: str) -> Any:
    return run_cli("status", "--admin-port", str(node.port), *args)


def test_metrics_of_a_real_daemon_pass_promtool(nodes: Callable[[str], LoggedGladd]) -> None:
    node = nodes("a")
    node.start_serving()
    response = node.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = response.content
    for name in (
        b"gladd_policies_generation 1.0",
        b'gladd_db_info{backend="sqlite"} 1.0',
        b"gladd_process_open_fds ",
        b"gladd_process_resident_memory_bytes ",
        b"gladd_event_loop_lag_seconds_count ",
        b'gladd_reloads_total{outcome="applied",trigger="start"} 1.0',
    ):
        assert name in body, name
    promtool_check(body)


def test_health_has_every_check_and_status_exits_0(nodes: Callable[[str], LoggedGladd]) -> None:
    node = nodes("a")
    node.start_serving()
    wait_until(status_is(node, "pass"), timeout=10, what="health pass")
    wait_until(lambda: "database:responseTime" in health(node)["checks"], timeout=5)
    checks = health(node)["checks"]
    for key in (
        "database:responseTime",
        "database:connections",
        "pool:alerts",
        "breakers:open",
        "executor:running",
        "executor:queued",
        "executor:deadLastHour",
        "executor:timeoutRate",
        "policies:generation",
        "eventloop:lag",
    ):
        assert key in checks, key
    # Said at once, not after the next round of local checks (10 s by default).
    assert "not open" not in checks["database:connections"][0]["output"]

    done = status(node)
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    assert first.endswith(f"at http://127.0.0.1:{node.port}: PASS")
    assert any(
        line.startswith("  database   ") and "sqlite: one connection" in line for line in rest
    )

    as_json = status(node, "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["status"] == "pass"

    node.stop()
    gone = status(node)
    assert gone.returncode == 69
    assert f"no gladd answers at http://127.0.0.1:{node.port} (connection refused)" in gone.stderr


def test_a_database_on_a_closed_port_fails_health_but_not_liveness(
    nodes: Callable[[str], LoggedGladd],
) -> None:
    node = nodes("a")
    node.start_ready("--database-url", f"postgresql://postgres@127.0.0.1:{free_port()}/gladd")
    wait_until(status_is(node, "fail"), timeout=10, what="health fail")
    assert node.get("/health").status_code == 503
    assert node.get("/health/ready").status_code == 503
    assert node.get("/health/live").status_code == 200


def test_status_exits_2_while_the_database_is_unreachable(
    nodes: Callable[[str], LoggedGladd],
) -> None:
    node = nodes("a")
    node.start_ready("--database-url", f"postgresql://postgres@127.0.0.1:{free_port()}/gladd")
    wait_until(status_is(node, "fail"), timeout=10, what="health fail")
    done = status(node)
    assert done.returncode == 2, done.stdout + done.stderr
    assert ": FAIL" in done.stdout.splitlines()[0]


@pytest.mark.postgres
def test_pass_fail_pass_as_postgresql_goes_away_and_back(
    nodes: Callable[[str], LoggedGladd], pg_database: str
) -> None:
    node = nodes("a")
    with TcpProxy() as proxy:
        proxy.resume()
        node.policies.write_text('[database]\nquery_timeout = "1s"\n' + QUICK_CHECKS)
        node.start_serving("--database-url", proxy.url_for(pg_database))
        wait_until(status_is(node, "pass"), timeout=10, what="health pass")
        assert status(node).returncode == 0

        proxy.pause()
        wait_until(status_is(node, "fail"), timeout=10, what="health fail")
        # The executor's failing queries may say so first; the ping follows within a round.
        wait_until(
            lambda: health(node)["checks"]["database:responseTime"][0]["status"] == "fail",
            timeout=10,
            what="the database ping failing",
        )
        assert node.get("/health/ready").status_code == 503
        assert status(node).returncode == 2

        proxy.resume()
        wait_until(status_is(node, "pass"), timeout=15, what="health pass again")
        assert node.get("/health/ready").status_code == 200
        metrics = httpx.get(f"{node.url}/metrics", timeout=5).text
        assert 'gladd_db_info{backend="postgresql"} 1.0' in metrics
