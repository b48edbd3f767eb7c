"""Tasks through real daemons on PostgreSQL: crashes, two nodes, and a database that goes away.

Each test gets a database of its own (``pg_database``), so worker rows and tasks of one test
never meet another's. The outage tests put a TCP proxy between gladd and PostgreSQL and
take it away under the daemon's feet.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.from_thread
import asyncpg
import httpx
import pytest

from gladd.store.postgres.schema import MIGRATION_LOCK
from tests.e2e._proxy import TcpProxy
from tests.e2e.conftest import (
    RETRIED,
    LoggedGladd,
    await_state,
    by_state,
    cli_json,
    enqueue,
    executor_policies,
    run_cli,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

Nodes = Callable[[str], LoggedGladd]

# How gladd words a database outage depends on which query meets it first: a refused
# connect, a connection cut mid-query, or one reset by the peer.
OUTAGE_WORDS = ("connection refused", "connection was lost", "connection was reset")


def tasks(url: str, node: LoggedGladd, *args: str) -> Any:
    """``gladd tasks ARGS --json`` straight against the database at ``url``."""
    return cli_json("tasks", *args, "--database-url", url, "--policies", str(node.policies))


def start(node: LoggedGladd, url: str, **env: str) -> None:
    node.start_serving("--database-url", url, **env)


def test_kill_9_loses_nothing_and_another_node_reruns_only_what_was_running(
    nodes: Nodes, pg_database: str, api: httpx.Client
) -> None:
    first, second = nodes("first"), nodes("second")
    for node in (first, second):
        node.policies.write_text(
            # One attempt each: a crashed node does not spend it.
            executor_policies(concurrency=4, lease="1s", poll_interval="50ms")
        )
    start(first, pg_database)
    ids = [enqueue(api, first, "gladd.sleep", {"seconds": 0.2}) for _ in range(40)]

    def midway() -> bool:
        return len(by_state(api, first, "succeeded")) >= 4 and bool(by_state(api, first, "running"))

    wait_until(midway, timeout=10, interval=0.02, what="some succeeded, some running")
    first.kill()
    at_kill = {t["id"] for t in tasks(pg_database, first, "list", "--state", "running")}
    # Concurrency 4 bounds what runs; a slot is free once its task ends, while its outcome
    # may still wait in the outbox for the next batched write: on a busy machine the store
    # can then show a few more rows running than slots.
    assert 1 <= len(at_kill) <= 2 * 4

    # A new node on the same database: the dead worker's tasks come back after its lease.
    start(second, pg_database)
    wait_until(
        lambda: len(by_state(api, second, "succeeded")) == 40, timeout=15, what="all 40 succeed"
    )
    final = {t["id"]: t for t in tasks(pg_database, second, "list", "--limit", "100")}
    assert sorted(final) == sorted(ids)  # none lost
    assert all(t["result"] == {"slept": 0.2} for t in final.values())
    assert {i for i, t in final.items() if t["token"] > 1} == at_kill
    for task_id in at_kill:
        task = final[task_id]
        assert (task["rescues"], task["attempt"]) == (1, 2)
        assert [e["type"] for e in task["errors"]] == ["Rescued"]
    for task_id in set(ids) - at_kill:
        task = final[task_id]
        assert (task["token"], task["attempt"], task["rescues"], task["errors"]) == (1, 1, 0, [])
    code, log = second.stop()
    assert code == 0
    assert f"rescued {len(at_kill)} task(s) back to pending" in log


def test_two_nodes_share_the_work_without_running_anything_twice(
    nodes: Nodes, pg_database: str, api: httpx.Client
) -> None:
    alpha, beta = nodes("alpha"), nodes("beta")
    for node in (alpha, beta):
        node.policies.write_text(executor_policies(concurrency=2))
    start(alpha, pg_database, GLADD_NODE_NAME="alpha")
    start(beta, pg_database, GLADD_NODE_NAME="beta")

    # Who ran what: an owner is cleared when its task finishes, so sample the owners of
    # running tasks while the queue drains (a worker id is "NODE:PID:RANDOM"). With two
    # slots per node and 10 ms tasks, the drain takes over a second: dozens of samples,
    # each seeing a few running tasks — a node that never ran anything cannot show up.
    owners: set[str] = set()
    draining = threading.Event()

    def sample() -> None:
        with httpx.Client(timeout=5) as client:
            while not draining.is_set():
                for task in by_state(client, alpha, "running"):
                    if task["owner"]:
                        owners.add(task["owner"].split(":", 1)[0])
                time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        # Half through each node's API: both nodes hear of every task (LISTEN/NOTIFY).
        ids = [
            enqueue(api, node, "gladd.sleep", {"seconds": 0.01})
            for _ in range(150)
            for node in (alpha, beta)
        ]
        wait_until(
            lambda: len(by_state(api, beta, "succeeded")) == 300,
            timeout=15,
            interval=0.1,
            what="all 300 succeed",
        )
    finally:
        draining.set()
        sampler.join(timeout=5)
    took = time.monotonic() - started

    final = tasks(pg_database, alpha, "list", "--limit", "1000")
    assert sorted(t["id"] for t in final) == sorted(ids)
    twice = [t["id"] for t in final if (t["token"], t["attempt"], t["errors"]) != (1, 1, [])]
    assert twice == []  # every task claimed exactly once: no double execution
    assert owners == {"alpha", "beta"}, f"owners seen while draining: {owners} in {took:.1f}s"
    for node in (alpha, beta):
        code, log = node.stop()
        assert code == 0, log
        assert "Traceback" not in log


def test_a_database_down_at_start_makes_the_node_unready_until_it_returns(
    nodes: Nodes, pg_database: str, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies())
    with TcpProxy() as proxy:  # paused: nothing listens yet
        proxied = proxy.url_for(pg_database)
        ready = node.start_ready("--database-url", proxied)
        assert ready["READY"] == "1"  # systemd is not held up by the database

        def failing() -> dict[str, Any] | None:
            body: dict[str, Any] = node.get("/health").json()
            check = body["checks"]["database:connection"][0]
            return body if check["status"] == "fail" else None

        health = wait_until(failing, timeout=5, what="database check fails")
        check = health["checks"]["database:connection"][0]
        assert health["status"] == "fail"
        assert check["observedValue"] == proxied
        assert f"127.0.0.1:{proxy.port}" in check["output"]
        assert "refused" in check["output"].lower()
        unready = node.get("/health/ready")
        assert unready.status_code == 503
        assert unready.json()["status"] == "fail"
        assert unready.json()["output"].startswith("not ready: database:connection (")
        assert node.get("/health/live").status_code == 200
        refused = api.post(f"{node.url}/tasks", json={"kind": "gladd.noop"})
        assert refused.status_code == 503
        assert "database unavailable" in refused.json()["error"]

        proxy.resume()
        wait_until(
            lambda: node.get("/health/ready").status_code == 200, timeout=8, what="ready again"
        )
        assert node.get("/health").json()["checks"]["database:connection"][0]["status"] == "pass"
        ids = [enqueue(api, node, "gladd.sleep", {"seconds": 0.01}) for _ in range(5)]
        for task_id in ids:
            await_state(api, node, task_id, "succeeded")
        code, log = node.stop()
    assert code == 0
    assert "task store unavailable: PostgreSQL store" in log
    assert "retrying to open the task store in" in log
    assert "task store open:" in log
    assert "Traceback" not in log


def test_a_database_outage_mid_run_loses_nothing_and_the_node_recovers(
    nodes: Nodes, pg_database: str, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(
        executor_policies(concurrency=4, lease="10s", heartbeat="200ms", extra=RETRIED)
    )
    with TcpProxy() as proxy:
        proxy.resume()
        start(node, proxy.url_for(pg_database))
        before = [enqueue(api, node, "gladd.sleep", {"seconds": 0.1}) for _ in range(30)]
        wait_until(
            lambda: by_state(api, node, "running") and by_state(api, node, "succeeded"),
            timeout=5,
            interval=0.02,
            what="tasks flowing",
        )
        proxy.pause()
        outage = time.monotonic()
        # While the daemon cannot reach it, applications enqueue straight into PostgreSQL
        # (five CLI processes at once: the outage stays short and bounded).
        argv = ("tasks", "enqueue", "gladd.sleep", "--payload", json.dumps({"seconds": 0.1}))
        argv += ("--database-url", pg_database, "--policies", str(node.policies))
        with ThreadPoolExecutor(5) as pool:
            enqueued = list(pool.map(lambda _: run_cli(*argv), range(5)))
        assert all(done.returncode == 0 for done in enqueued), [e.stderr for e in enqueued]
        during = [int(done.stdout) for done in enqueued]
        wait_until(
            lambda: time.monotonic() - outage > 1.0 and "task store unavailable" in node.log(),
            timeout=5,
            what="the outage noticed",
        )
        assert node.process is not None
        assert node.process.poll() is None  # a lost database is no reason to exit
        proxy.resume()

        wait_until(
            lambda: len(by_state(api, node, "succeeded")) == 35,
            timeout=15,
            interval=0.1,
            what="every task succeeded",
        )
        final = tasks(pg_database, node, "list", "--limit", "100")
        assert sorted(t["id"] for t in final) == sorted(before + during)  # nothing lost
        assert {t["state"] for t in final} == {"succeeded"}
        assert all(t["result"] == {"slept": 0.1} for t in final)
        assert node.get("/health/ready").status_code == 200
        after = enqueue(api, node, "gladd.noop", None)  # still working
        await_state(api, node, after, "succeeded")
        code, log = node.stop()
    assert code == 0, log
    # The operator sees what failed, against which store, and that it will be retried.
    where = f"PostgreSQL store {proxy.url_for(pg_database)}"
    assert f"task store unavailable: {where}: " in log
    assert any(words in log for words in OUTAGE_WORDS), log
    assert "answers again" in log


def test_the_node_is_not_ready_while_its_store_is_still_opening(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies())
    # A server that takes connections and never answers: the store cannot finish opening.
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        port = blackhole.getsockname()[1]
        node.start_ready("--database-url", f"postgresql://postgres@127.0.0.1:{port}/gladd")
        refused = api.post(f"{node.url}/tasks", json={"kind": "gladd.noop"})
        assert refused.status_code == 503  # the task routes know the store is not open...
        assert node.get("/health/ready").status_code == 503  # ...and readiness must agree
        code, log = node.stop()
    assert code == 0, log


def test_the_node_is_not_ready_until_its_store_has_migrated(
    nodes: Nodes, pg_database: str, api: httpx.Client
) -> None:
    """The pool is up while the migration still waits for another node's lock: a health
    ping that answers then must not make the node ready before it can take tasks."""
    node = nodes("a")
    node.policies.write_text(executor_policies())
    released = threading.Event()

    async def hold_the_migration_lock() -> None:
        conn = await asyncpg.connect(pg_database, timeout=5)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            locked.set()
            await anyio.to_thread.run_sync(released.wait, 30)
        finally:
            await conn.close()

    locked = threading.Event()
    holder = threading.Thread(target=anyio.run, args=(hold_the_migration_lock,))
    holder.start()
    try:
        assert locked.wait(10)
        node.start_ready("--database-url", pg_database)
        # Several rounds of the health checker's pings while the migration waits.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            ready = node.get("/health/ready")
            assert ready.status_code == 503, ready.text
            assert api.post(f"{node.url}/tasks", json={"kind": "gladd.noop"}).status_code == 503
            time.sleep(0.1)
    finally:
        released.set()
        holder.join(10)
    wait_until(lambda: node.get("/health/ready").status_code == 200, timeout=15, what="ready")
    await_state(api, node, enqueue(api, node, "gladd.noop", None), "succeeded")
    code, log = node.stop()
    assert code == 0, log


def test_health_reports_a_database_outage_mid_run(nodes: Nodes, pg_database: str) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(heartbeat="200ms"))
    with TcpProxy() as proxy:
        proxy.resume()
        start(node, proxy.url_for(pg_database))
        proxy.pause()

        def unready() -> bool:
            return node.get("/health/ready").status_code == 503

        try:
            wait_until(unready, timeout=3, what="/health/ready 503 while the database is away")
            check = node.get("/health").json()["checks"]["database:connection"][0]
            assert check["status"] == "fail"
            # Which query meets the outage first decides the wording (OUTAGE_WORDS); either
            # way the check names the store.
            assert f"127.0.0.1:{proxy.port}" in check["output"]
            assert any(words in check["output"] for words in OUTAGE_WORDS), check["output"]
        finally:
            proxy.resume()
        wait_until(lambda: not unready(), timeout=5, what="ready again")
        code, log = node.stop()
    assert code == 0, log


def test_a_database_outage_mid_run_logs_no_traceback(nodes: Nodes, pg_database: str) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(heartbeat="200ms"))
    with TcpProxy() as proxy:
        proxy.resume()
        start(node, proxy.url_for(pg_database))
        proxy.pause()
        wait_until(
            lambda: "task store unavailable" in node.log(), timeout=3, what="the outage noticed"
        )
        time.sleep(0.5)  # a few more failing rounds of claims and heartbeats
        proxy.resume()
        code, log = node.stop()
    assert code == 0, log
    assert any(words in log for words in OUTAGE_WORDS), log
    assert "Traceback" not in log


def test_a_reloaded_query_timeout_bounds_the_next_queries(
    nodes: Nodes, pg_database: str, api: httpx.Client
) -> None:
    node = nodes("solo")
    node.policies.write_text(executor_policies(extra='[database]\nquery_timeout = "500ms"\n'))
    start(node, pg_database)
    made = api.post(f"{node.url}/tasks", json={"kind": "gladd.noop", "delay": "1h"})
    assert made.status_code == 201, made.text
    task_id = made.json()["id"]

    def cancel_while_locked(hold: float) -> tuple[httpx.Response, float]:
        """Cancel the task while another session holds its row for ``hold`` seconds."""
        with anyio.from_thread.start_blocking_portal() as portal:
            blocker = portal.call(asyncpg.connect, pg_database)
            portal.call(blocker.execute, "BEGIN")
            portal.call(blocker.execute, f"SELECT FROM gladd_tasks WHERE id = {task_id} FOR UPDATE")
            release = threading.Timer(hold, portal.call, (blocker.close,))
            release.start()
            try:
                started = time.monotonic()
                response = api.post(f"{node.url}/tasks/{task_id}/cancel")
                return response, time.monotonic() - started
            finally:
                release.join()

    refused, _ = cancel_while_locked(1.5)  # would succeed once the lock goes, at 1.5s
    assert refused.status_code == 500, refused.text
    assert "cancel timed out after 0.5s (query_timeout)" in refused.json()["error"]

    # An operator raises the timeout during the incident: the same wait now goes through.
    node.policies.write_text(node.policies.read_text().replace('"500ms"', '"4s"'))
    reloaded = run_cli("reload", "--admin-port", str(node.port))
    assert reloaded.returncode == 0, reloaded.stderr
    assert "database.query_timeout 500ms → 4s" in reloaded.stdout or reloaded.stdout.startswith(
        "unchanged; serving generation 2"  # the file watcher got there first
    )
    cancelled, took = cancel_while_locked(1.0)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert took >= 0.9
