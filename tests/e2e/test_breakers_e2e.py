"""Breakers seen and held by an operator: a failing local server opens one, `GET /breakers`
and `gladd breakers` say why; isolating it postpones the tasks it guards, a reset lets them
run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Gladd, LoggedGladd, run_cli, wait_until

pytestmark = pytest.mark.e2e

POLICIES = """
schema_version = 1
[executor]
retry = "once"
poll_interval = "100ms"
[retry.once]
attempts = 1
deadline = "1h"
[breaker.up]
failures = 2
open_for = "1h"
max_open_for = "2h"
[services.up]
breaker = "up"
timeout = "2s"
hosts = ["127.0.0.1:{port}"]
[tasks."http.request"]
service = "up"
"""


class Switch(ThreadingHTTPServer):
    failing = True
    hits = 0


class _Handler(BaseHTTPRequestHandler):
    server: Switch

    def do_GET(self) -> None:
        self.server.hits += 1
        self.send_response(503 if self.server.failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def switch() -> Iterator[Switch]:
    server = Switch(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def breakers(gladd: Gladd) -> dict[str, dict[str, Any]]:
    answer = gladd.get("/breakers")
    assert answer.status_code == 200, answer.text
    return {b["name"]: b for b in answer.json()["breakers"]}


def enqueue(gladd: Gladd, url: str) -> int:
    made = httpx.post(
        f"{gladd.url}/tasks",
        json={"kind": "http.request", "payload": {"method": "GET", "url": url}},
        timeout=5,
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def state_of(gladd: Gladd, task_id: int) -> str:
    return str(gladd.get(f"/tasks/{task_id}").json()["state"])


def test_an_operator_sees_why_a_breaker_opened_and_isolates_and_resets_it(
    gladd: Gladd, switch: Switch
) -> None:
    port = switch.server_address[1]
    gladd.policies.write_text(POLICIES.format(port=port))
    gladd.start_ready()
    admin = ("--admin-port", str(gladd.port))
    url = f"http://127.0.0.1:{port}/status"

    # Before any call the service's breaker is listed, closed.
    assert breakers(gladd)["up:up"]["state"] == "closed"

    # Two failing calls open it; the listing says why and when the next probe is.
    for _ in range(2):
        enqueue(gladd, url)
    wait_until(lambda: breakers(gladd)["up:up"]["state"] == "open", timeout=10, what="open")
    up = breakers(gladd)["up:up"]
    assert up["policy"] == "up"
    assert up["target"] == "up"
    assert up["next_probe"] is not None
    assert "2 consecutive failures" in up["reason"]
    assert len(up["recent_failures"]) == 2
    assert all("503" in f["error"] for f in up["recent_failures"]), up["recent_failures"]
    shown = run_cli("breakers", *admin)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("up:up"))
    assert " open " in row
    assert "503" in row

    # A task for the service waits; through the daemon, `waiting` says on what.
    blocked = enqueue(gladd, url)
    wait_until(
        lambda: (
            "breaker up:up is open on this node (see `gladd breakers`)"
            in gladd.get(f"/tasks/{blocked}").json()["waiting"]
        ),
        timeout=5,
        what="the open breaker named in waiting",
    )
    cancelled = httpx.post(f"{gladd.url}/tasks/{blocked}/cancel", timeout=5)
    assert cancelled.status_code == 200, cancelled.text

    # Reset (by the service's name) closes it and forgets the failures; the service is up.
    switch.failing = False
    reset = run_cli("breakers", "reset", "up", *admin)
    assert reset.returncode == 0, reset.stderr
    assert "up:up: open -> closed" in reset.stdout
    assert breakers(gladd)["up:up"]["recent_failures"] == []

    # Isolated: the task is held back, the server never called, until a reset.
    isolate = run_cli("breakers", "isolate", "up:up", *admin)
    assert isolate.returncode == 0, isolate.stderr
    assert breakers(gladd)["up:up"]["state"] == "isolated"
    hits = switch.hits
    held = enqueue(gladd, url)

    def postponed() -> bool:
        task = gladd.get(f"/tasks/{held}").json()
        run_at, made = (datetime.fromisoformat(task[k]) for k in ("run_at", "created_at"))
        return bool(task["state"] == "pending" and run_at - made > timedelta(seconds=1))

    wait_until(postponed, timeout=5, what="the task postponed, not run")
    assert gladd.get(f"/tasks/{held}").json()["attempt"] == 0
    # `gladd tasks show` (straight on the store) says what holds it back, and how to end it.
    shown = run_cli(
        "tasks", "show", str(held), "--state-dir", str(gladd.state_dir),
        "--policies", str(gladd.policies),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "waiting: breaker up:up isolated by operator 127.0.0.1 (no token) since" in shown.stdout
    assert "`gladd breakers reset up:up` lets it run" in shown.stdout
    listed = httpx.get(f"{gladd.url}/tasks", params={"state": "pending"}, timeout=5).json()["tasks"]
    assert [t["id"] for t in listed] == [held]
    assert switch.hits == hits

    reset = run_cli("breakers", "reset", "up:up", *admin)
    assert reset.returncode == 0, reset.stderr
    wait_until(lambda: state_of(gladd, held) == "succeeded", timeout=10, what="ran after reset")
    assert switch.hits == hits + 1

    # An unknown name is 66, naming the breakers there are; the API's answer is a 404.
    unknown = run_cli("breakers", "isolate", "nope", *admin)
    assert unknown.returncode == 66
    assert "no breaker 'nope'; the breakers are: up:up" in unknown.stderr
    assert httpx.post(f"{gladd.url}/breakers/nope/reset", timeout=5).status_code == 404

    code, err = gladd.stop()
    assert code == 0
    assert "admin action isolate on breaker up:up (was " in err
    assert ") by 127.0.0.1 (no token)" in err
    assert f"task {held} (http.request) postponed" in err
    assert "is isolated by operator" in err


@pytest.mark.postgres
def test_an_isolation_holds_on_every_node_of_a_shared_postgresql_store(
    nodes: Callable[[str], LoggedGladd], pg_database: str, switch: Switch
) -> None:
    alpha, beta = nodes("alpha"), nodes("beta")
    for node, name in ((alpha, "alpha"), (beta, "beta")):
        node.policies.write_text(POLICIES.format(port=switch.server_address[1]))
        node.start_serving("--database-url", pg_database, GLADD_NODE_NAME=name)

    isolated = run_cli("breakers", "isolate", "up", "--admin-port", str(alpha.port))
    assert isolated.returncode == 0, isolated.stderr
    wait_until(
        lambda: breakers(beta)["up:up"]["state"] == "isolated",
        timeout=10,
        what="beta holds the isolation alpha stored",
    )
    assert "isolated by operator 127.0.0.1 (no token)" in breakers(beta)["up:up"]["reason"]

    # A node started later holds it from the start.
    gamma = nodes("gamma")
    gamma.policies.write_text(POLICIES.format(port=switch.server_address[1]))
    gamma.start_serving("--database-url", pg_database, GLADD_NODE_NAME="gamma")
    wait_until(lambda: breakers(gamma)["up:up"]["state"] == "isolated", timeout=10, what="gamma")

    reset = run_cli("breakers", "reset", "up:up", "--admin-port", str(beta.port))
    assert reset.returncode == 0, reset.stderr
    for node in (alpha, gamma):
        wait_until(
            lambda node=node: breakers(node)["up:up"]["state"] == "closed",
            timeout=10,
            what=f"{node.port} reset",
        )
