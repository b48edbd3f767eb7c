"""Task timelines produced by real causes in real daemons (issue 14): a breaker opened by a
failing local server postpones a task; operators cancel (pending and running) and retry;
a daemon killed with SIGKILL has its task rescued by another; a frozen daemon's late
result is fenced out. Each is read through ``GET /tasks/{id}`` and ``gladd tasks show``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    Gladd,
    LoggedGladd,
    cli_json,
    executor_policies,
    run_cli,
    wait_until,
)
from tests.e2e.test_breakers_e2e import POLICIES, Switch, breakers, switch  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

Nodes = Callable[[str], LoggedGladd]
OPERATOR = "127.0.0.1 (no token)"  # gladd.admin.audit.who of a loopback call, no token set


def timeline(node: Gladd, task_id: int) -> list[dict[str, Any]]:
    answer = httpx.get(f"{node.url}/tasks/{task_id}", timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.json()["timeline"]  # type: ignore[no-any-return]


def events(node: Gladd, task_id: int) -> list[str]:
    return [e["event"] for e in timeline(node, task_id)]


def post_task(node: Gladd, kind: str, payload: Any, **fields: Any) -> int:
    made = httpx.post(
        f"{node.url}/tasks", json={"kind": kind, "payload": payload, **fields}, timeout=5
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def state(node: Gladd, task_id: int) -> str:
    return str(httpx.get(f"{node.url}/tasks/{task_id}", timeout=5).json()["state"])


def test_an_open_breaker_shows_as_postponed_with_its_reason(
    gladd: Gladd,
    switch: Switch,  # noqa: F811 (the fixture imported above)
) -> None:
    """``switch``: tests/e2e/test_breakers_e2e.py's local server, failing (503) at first."""
    port = switch.server_address[1]
    gladd.policies.write_text(POLICIES.format(port=port))
    gladd.start_ready()
    url = f"http://127.0.0.1:{port}/status"
    request = {"method": "GET", "url": url}
    for _ in range(2):
        post_task(gladd, "http.request", request)
    wait_until(lambda: breakers(gladd)["up:up"]["state"] == "open", timeout=10, what="open")

    held = post_task(gladd, "http.request", request)
    wait_until(lambda: "postponed" in events(gladd, held), timeout=10, what="postponed")
    entries = timeline(gladd, held)
    assert entries[0]["event"] == "created"
    assert entries[0]["source"] == "http"
    postponed = next(e for e in entries if e["event"] == "postponed")
    assert postponed["reason"] == "breaker"
    assert postponed["why"] == "breaker up:up is open"
    assert datetime.fromisoformat(postponed["until"]) > datetime.fromisoformat(postponed["at"])
    ended = entries[entries.index(postponed) - 1]
    assert (ended["event"], ended["outcome"], ended["attempt"]) == ("attempt ended", "released", 1)

    # `gladd tasks show`, straight on the store: the same timeline, one aligned line each.
    where = ("--state-dir", str(gladd.state_dir), "--policies", str(gladd.policies))
    shown = run_cli("tasks", "show", str(held), *where)
    assert shown.returncode == 0, shown.stderr
    assert "  timeline (UTC):" in shown.stdout
    lines = [ln for ln in shown.stdout.splitlines() if "breaker up:up is open" in ln]
    assert lines, shown.stdout
    assert " postponed " in lines[0]
    assert "breaker (breaker up:up is open) until " in lines[0]
    as_json = cli_json("tasks", "show", str(held), *where)
    assert [e["event"] for e in as_json["timeline"]][:3] == [
        "created",
        "claimed",
        "attempt started",
    ]
    assert as_json["started_at"] is not None

    # An enqueue by the CLI through this daemon says the CLI created it.
    made = run_cli("tasks", "enqueue", "gladd.noop", "--admin-port", str(gladd.port), *where)
    assert made.returncode == 0, made.stderr
    assert timeline(gladd, int(made.stdout.strip()))[0]["source"] == "cli"
    gladd.stop()


def test_cancels_and_an_operators_retry_are_on_the_timeline(gladd: Gladd) -> None:
    gladd.policies.write_text(executor_policies(concurrency=2))
    gladd.start_ready()
    where = ("--state-dir", str(gladd.state_dir), "--policies", str(gladd.policies))

    # Running: the cancel is requested, then the worker stops it.
    running = post_task(gladd, "gladd.sleep", {"seconds": 30})
    wait_until(lambda: state(gladd, running) == "running", timeout=10, what="running")
    cancelled = httpx.post(f"{gladd.url}/tasks/{running}/cancel", timeout=5)
    assert cancelled.status_code == 200, cancelled.text
    wait_until(lambda: state(gladd, running) == "cancelled", timeout=10, what="stopped")
    entries = timeline(gladd, running)
    assert [e["event"] for e in entries[-3:]] == ["cancel requested", "attempt ended", "cancelled"]
    assert entries[-3]["by"] == OPERATOR
    assert entries[-2]["outcome"] == "cancelled"

    # Pending (not due for an hour): cancelled at once, by the CLI.
    later = post_task(gladd, "gladd.noop", {}, delay="1h")
    done = run_cli("tasks", "cancel", str(later), *where)
    assert done.returncode == 0, done.stderr
    last = timeline(gladd, later)[-1]
    assert (last["event"], last["by"]) == ("cancelled", "cli")

    # An operator's retry through the API: recorded with who asked, and the task runs.
    retried = httpx.post(f"{gladd.url}/tasks/{later}/retry", timeout=5)
    assert retried.status_code == 200, retried.text
    wait_until(lambda: state(gladd, later) == "succeeded", timeout=10, what="ran again")
    after = events(gladd, later)
    assert after[after.index("retried") :] == [
        "retried",
        "claimed",
        "attempt started",
        "attempt ended",
    ]
    assert next(e for e in timeline(gladd, later) if e["event"] == "retried")["by"] == OPERATOR
    gladd.stop()


def sleeping_on(first: LoggedGladd, url: str, name: str, seconds: float) -> int:
    """A ``gladd.sleep`` task running on ``first``, a node named ``name`` on PostgreSQL
    ``url`` (with a 1 s lease, as every node here: a dead node is noticed fast)."""
    first.start_serving("--database-url", url, GLADD_NODE_NAME=name)
    task = post_task(first, "gladd.sleep", {"seconds": seconds})
    wait_until(lambda: state(first, task) == "running", timeout=10, what=f"running on {name}")
    return task


@pytest.mark.postgres
def test_a_task_of_a_killed_daemon_is_rescued_from_it(nodes: Nodes, pg_database: str) -> None:
    first, second = nodes("first"), nodes("second")
    for node in (first, second):
        node.policies.write_text(executor_policies(lease="1s", poll_interval="50ms"))
    task = sleeping_on(first, pg_database, "first", 30)
    first.kill()

    second.start_serving("--database-url", pg_database, GLADD_NODE_NAME="second")
    wait_until(lambda: "rescued" in events(second, task), timeout=20, what="rescued")
    entries = timeline(second, task)
    claimed = next(e for e in entries if e["event"] == "claimed")
    rescued = next(e for e in entries if e["event"] == "rescued")
    assert claimed["node"].startswith("first:")
    assert rescued["node"] == claimed["node"]
    assert rescued["why"] == "owner dead"
    assert rescued["state"] == "pending"


@pytest.mark.postgres
def test_a_frozen_daemons_late_result_is_fenced(nodes: Nodes, pg_database: str) -> None:
    """A daemon frozen (SIGSTOP: a VM paused, a long GC) past its lease loses its task to
    another; thawed, it finishes the attempt, and its result under the old token is
    discarded — and said so on the timeline."""
    alpha, beta = nodes("alpha"), nodes("beta")
    for node in (alpha, beta):
        node.policies.write_text(executor_policies(lease="1s", poll_interval="50ms"))
    task = sleeping_on(alpha, pg_database, "alpha", 2)
    assert alpha.process is not None
    alpha.process.send_signal(signal.SIGSTOP)
    try:
        beta.start_serving("--database-url", pg_database, GLADD_NODE_NAME="beta")
        wait_until(
            lambda: [e for e in timeline(beta, task) if e["event"] == "claimed"][1:],
            timeout=20,
            what="beta rescued and claimed it",
        )
    finally:
        alpha.process.send_signal(signal.SIGCONT)
    wait_until(lambda: "fenced" in events(beta, task), timeout=20, what="fenced")
    entries = timeline(beta, task)
    first_claim = next(e for e in entries if e["event"] == "claimed")
    fenced = next(e for e in entries if e["event"] == "fenced")
    assert fenced["node"] == first_claim["node"]
    assert fenced["node"].startswith("alpha:")
    assert fenced["token"] == first_claim["token"] == 1
    assert fenced["outcome"] == "succeeded"
    wait_until(lambda: state(beta, task) == "succeeded", timeout=20, what="beta's run succeeds")
