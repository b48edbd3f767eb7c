"""Counts, pages and bulk actions as an operator meets them (issue 14): a real ``gladd run``
on its SQLite store, the ``gladd tasks`` CLI and the admin API.

Dead tasks come from the test plugin of test_wait_e2e.py (``waitprobe.steps`` with
``fail``: it raises FailTask, so its task dies at once).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LoggedGladd, executor_policies, run_cli, wait_until

pytestmark = pytest.mark.e2e

PLUGIN_ENV = {"GLADD_PLUGIN_PATHS": str(Path(__file__).parent / "wait_plugins")}
FAILING = {"kind": "waitprobe.steps", "payload": {"steps": 1, "ms": 1, "fail": True}}


@pytest.fixture
def node(nodes: Any) -> LoggedGladd:
    made: LoggedGladd = nodes("a")
    made.policies.write_text(executor_policies())
    made.start_serving(**PLUGIN_ENV)
    return made


def flags(node: LoggedGladd) -> list[str]:
    return ["--state-dir", str(node.state_dir), "--policies", str(node.policies)]


def tasks(
    node: LoggedGladd, *args: str, answer: str | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli("tasks", *args, *flags(node), env=PLUGIN_ENV, input=answer)


def stats(node: LoggedGladd) -> dict[str, Any]:
    done = tasks(node, "stats", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def dead_count(node: LoggedGladd) -> int:
    return int(stats(node)["kinds"].get("waitprobe.steps", {}).get("dead", 0))


def test_stats_pages_and_a_bulk_retry_through_cli_and_api(
    node: LoggedGladd, api: httpx.Client
) -> None:
    failing = [api.post(f"{node.url}/tasks", json=FAILING).json()["id"] for _ in range(3)]
    for _ in range(2):
        assert api.post(f"{node.url}/tasks", json={"kind": "gladd.noop"}).status_code == 201
    wait_until(lambda: dead_count(node) == 3, timeout=10, what="3 dead tasks")
    wait_until(lambda: stats(node)["totals"]["succeeded"] == 2, timeout=10, what="2 succeeded")

    # The same counts from the CLI (a table), the API and the gauge.
    table = tasks(node, "stats")
    assert table.returncode == 0, table.stderr
    line = next(ln for ln in table.stdout.splitlines() if ln.startswith("waitprobe.steps"))
    assert line.split()[1:] == ["0", "0", "0", "3", "0", "3"]
    served = api.get(f"{node.url}/tasks/stats").json()
    assert served["kinds"] == stats(node)["kinds"]
    assert served["total"] == 5

    # Two pages of dead tasks: the first says how to get the second.
    first = tasks(node, "list", "--state", "dead", "--limit", "2")
    assert first.returncode == 0, first.stderr
    more = [ln for ln in first.stdout.splitlines() if ln.startswith("more: ")]
    assert len(more) == 1, first.stdout
    shown = [int(ln.split()[0]) for ln in first.stdout.splitlines()[2:] if ln[:8].strip().isdigit()]
    assert shown == failing[::-1][:2]
    argv = shlex.split(more[0].removeprefix("more: "))
    assert argv[:3] == ["gladd", "tasks", "list"]
    second = tasks(node, *argv[2:])
    assert second.returncode == 0, second.stderr
    assert "more: " not in second.stdout
    rows = [ln for ln in second.stdout.splitlines()[2:] if ln.strip()]
    assert [int(r.split()[0]) for r in rows] == failing[::-1][2:]

    # Asked first; "n" changes nothing.
    declined = tasks(node, "retry", "--all", "--state", "dead", answer="n\n")
    assert declined.returncode == 1
    assert "3 dead task(s) match" in declined.stdout
    assert dead_count(node) == 3
    # Confirmed: every one runs again (and, failing again, dies with a second error).
    retried = tasks(
        node, "retry", "--all", "--state", "dead", "--kind", "waitprobe.steps", answer="y\n"
    )
    assert retried.returncode == 0, retried.stderr
    assert "retried 3 task(s)" in retried.stdout

    def ran_again() -> bool:
        found = [api.get(f"{node.url}/tasks/{i}").json() for i in failing]
        return all(t["state"] == "dead" and len(t["errors"]) == 2 for t in found)

    wait_until(ran_again, timeout=10, what="the retried tasks ran again")
    metrics = api.get(f"{node.url}/metrics").text
    wait_until(
        lambda: (
            'gladd_tasks{kind="waitprobe.steps",state="dead"} 3.0'
            in api.get(f"{node.url}/metrics").text
        ),
        timeout=15,
        what=f"the gauge by kind (last: {metrics[-300:]})",
    )

    workers = api.get(f"{node.url}/workers").json()["workers"]
    assert len(workers) == 1
    assert workers[0]["seen_ago"] < 5


def test_bad_listing_input_is_a_usage_error_naming_the_flag(node: LoggedGladd) -> None:
    for args, flag in (
        (("list", "--limit", "5000"), "--limit"),
        (("list", "--cursor", "nope"), "--cursor"),
        (("list", "--since", "yesterday"), "--since"),
        (("retry", "--all", "--state", "pending", "--yes"), "--state"),
    ):
        done = tasks(node, *args)
        assert done.returncode == 64, (args, done.stderr)
        assert done.stderr.startswith(f"gladd: {flag}: "), done.stderr
    both = tasks(node, "cancel", "7", "--all")
    assert both.returncode == 64
    assert "give a task ID, or --all" in both.stderr
