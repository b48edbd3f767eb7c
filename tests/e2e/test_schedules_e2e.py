"""Schedules through real daemons: three nodes on one PostgreSQL fire each tick exactly once,
even when one is killed with SIGKILL; a reload adds, edits and removes schedules live."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import LoggedGladd, executor_policies, run_cli, wait_until

pytestmark = [pytest.mark.e2e]

Nodes = Callable[[str], LoggedGladd]

EVERY_SECOND = """
[schedules.pulse]
every = "1s"
kind = "gladd.noop"
overlap = "allow"
catch_up = "all"
catch_up_window = "1h"
"""


async def _ticks(url: str) -> list[datetime]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT scheduled_for FROM gladd_tasks WHERE schedule = 'pulse' ORDER BY 1"
        )
    finally:
        await conn.close()
    return [row["scheduled_for"] for row in rows]


def ticks(url: str) -> list[datetime]:
    return asyncio.run(_ticks(url))


@pytest.mark.postgres
def test_three_nodes_fire_every_tick_exactly_once_through_a_kill_9(
    nodes: Nodes, pg_database: str
) -> None:
    three = [nodes(name) for name in ("a", "b", "c")]
    for node in three:
        node.policies.write_text(executor_policies(concurrency=4) + EVERY_SECOND)
        node.start_serving("--database-url", pg_database, GLADD_NODE_NAME=node.tmp.name)

    def fired(count: int) -> Callable[[], bool]:
        return lambda: len(ticks(pg_database)) >= count

    wait_until(fired(12), timeout=30, interval=0.2, what="12 ticks fired")
    three[0].kill()  # mid-way, no goodbye: the others go on
    wait_until(fired(28), timeout=40, interval=0.2, what="28 ticks fired")
    for node in three[1:]:
        code, log = node.stop()
        assert code == 0, log
    seen = ticks(pg_database)
    doubled = [tick for tick, n in Counter(seen).items() if n > 1]
    assert doubled == []
    # Every second from the first tick to the last, none missing (a tick is a whole second).
    seconds = [int(t.timestamp()) for t in seen]
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))


def test_gladd_schedules_lists_and_runs_and_a_reload_adds_edits_and_removes(
    nodes: Nodes,
) -> None:
    node = nodes("a")
    base = executor_policies(concurrency=2)
    node.policies.write_text(base + EVERY_SECOND.replace("pulse", "beat"))
    node.start_serving()
    env = {"GLADD_STATE_DIR": str(node.state_dir), "GLADD_POLICIES": str(node.policies)}

    def listed() -> dict[str, dict[str, object]]:
        body = httpx.get(f"{node.url}/schedules", timeout=5).json()
        return {s["name"]: s for s in body["schedules"]}

    wait_until(lambda: listed()["beat"]["last_outcome"] == "succeeded", timeout=15, what="beat ran")
    shown = run_cli("schedules", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "beat" in shown.stdout
    assert "every 1s" in shown.stdout

    ran = run_cli("schedules", "run", "beat", env=env)
    assert ran.returncode == 0, ran.stderr
    task = httpx.get(f"{node.url}/tasks/{ran.stdout.strip()}", timeout=5).json()
    assert task["schedule"] == "beat"
    missing = run_cli("schedules", "run", "nope", env=env)
    assert missing.returncode == 66
    assert "no schedule 'nope' in the policies (schedules: beat)" in missing.stderr
    assert httpx.post(f"{node.url}/schedules/nope/run", timeout=5).status_code == 404

    # Reload: beat removed, nightly added (paused), hourly edited in.
    node.policies.write_text(
        base
        + '\n[schedules.nightly]\ncron = "0 3 * * *"\ntimezone = "Europe/Berlin"\n'
        + 'kind = "gladd.noop"\npaused = true\n'
    )
    wait_until(lambda: set(listed()) == {"nightly"}, timeout=10, what="the reload applied")
    assert listed()["nightly"]["paused"] is True
    applied = time.time()

    def beats() -> list[float]:
        listing = httpx.get(f"{node.url}/tasks?kind=gladd.noop&limit=1000", timeout=5).json()
        return [
            datetime.fromisoformat(t["scheduled_for"]).timestamp()
            for t in listing["tasks"]
            if t["schedule"] == "beat" and t["scheduled_for"]
        ]

    # Removed: no tick of beat after the reload applied (three ticks' time is given).
    wait_until(lambda: time.time() > applied + 3, timeout=5, what="three seconds after")
    assert max(beats()) <= applied + 0.5
    code, log = node.stop()
    assert code == 0, log
