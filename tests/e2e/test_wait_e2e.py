"""Waiting for results through a real daemon: ``gladd tasks wait`` and ``gladd.Client.wait``.

A real ``gladd run`` runs the test plugin ``tests/e2e/wait_plugins/waitprobe.py``, whose
handler reports its progress step by step; the waiting happens in other processes (the
CLI) or another store object (a Client), which must be woken by the daemon's writes — the
database file changing on SQLite, NOTIFY on PostgreSQL — well before their safety re-read.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import gladd
from gladd.executor.waiting import WAIT_RECHECK
from tests.e2e.conftest import GLADD, LoggedGladd, executor_policies, run_cli, wait_until

pytestmark = [pytest.mark.e2e]

PLUGINS = Path(__file__).parent / "wait_plugins"
PLUGIN_ENV = {"GLADD_PLUGIN_PATHS": str(PLUGINS)}
STEPS = "waitprobe.steps"


def start(node: LoggedGladd, database: str | None = None) -> list[str]:
    """The daemon serving; the CLI flags that name its store."""
    node.policies.write_text(executor_policies())
    args = ("--database-url", database) if database else ()
    node.start_serving(*args, **PLUGIN_ENV)
    where = ["--database-url", database] if database else ["--state-dir", str(node.state_dir)]
    return [*where, "--policies", str(node.policies)]


def enqueue(api: httpx.Client, node: LoggedGladd, payload: dict[str, Any]) -> int:
    made = api.post(f"{node.url}/tasks", json={"kind": STEPS, "payload": payload})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def wait_cli(flags: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("tasks", "wait", *args, *flags, env=PLUGIN_ENV)


def finished_at(api: httpx.Client, node: LoggedGladd, task_id: int) -> float:
    task = api.get(f"{node.url}/tasks/{task_id}").json()
    return datetime.fromisoformat(task["finished_at"]).timestamp()


@pytest.fixture
def node(nodes: Any) -> LoggedGladd:
    made: LoggedGladd = nodes("a")
    return made


def test_wait_prints_the_result_and_the_progress_as_it_goes(
    node: LoggedGladd, api: httpx.Client
) -> None:
    flags = start(node)
    task_id = enqueue(api, node, {"steps": 8, "ms": 400})
    done = wait_cli(flags, str(task_id), "--progress", "--timeout", "30s")
    woke = time.time()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"steps": 8}
    # Progress lines on stderr as it went (throttled: not necessarily every step).
    lines = [line for line in done.stderr.splitlines() if line.startswith(f"task {task_id}:")]
    assert any("%" in line and "step" in line for line in lines), done.stderr
    # Woken by the daemon's commit, long before the safety re-read would have looked.
    assert woke - finished_at(api, node, task_id) < WAIT_RECHECK / 2
    shown = run_cli("tasks", "show", str(task_id), *flags, env=PLUGIN_ENV)
    assert "progress: 100% step 8 of 8 (attempt 1," in shown.stdout, shown.stdout
    api_task = api.get(f"{node.url}/tasks/{task_id}").json()
    assert api_task["progress"]["fraction"] == 1.0
    assert api_task["progress"]["message"] == "step 8 of 8"
    assert api_task["progress"]["attempt"] == 1


def test_wait_exit_codes_dead_cancelled_timeout_unknown(
    node: LoggedGladd, api: httpx.Client
) -> None:
    flags = start(node)
    dead = enqueue(api, node, {"steps": 1, "ms": 10, "fail": True})
    failed = wait_cli(flags, str(dead), "--timeout", "30s")
    assert failed.returncode == 1, failed.stderr
    assert f"task {dead} dead after attempt 1:" in failed.stderr
    assert "told to fail" in failed.stderr

    slow = enqueue(api, node, {"steps": 100, "ms": 100})
    wait_until(
        lambda: api.get(f"{node.url}/tasks/{slow}").json()["state"] == "running",
        timeout=10,
        what="the slow task running",
    )
    timed_out = wait_cli(flags, str(slow), "--timeout", "300ms", "--json")
    assert timed_out.returncode == 75, timed_out.stderr
    assert f"task {slow} (waitprobe.steps) is still running" in timed_out.stderr
    assert json.loads(timed_out.stdout)["state"] == "running"

    waiter = subprocess.Popen(
        [GLADD, "tasks", "wait", str(slow), *flags],
        env={**_clean_env(), **PLUGIN_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cancel = run_cli("tasks", "cancel", str(slow), *flags, env=PLUGIN_ENV)
        assert cancel.returncode == 0, cancel.stderr
        _, err = waiter.communicate(timeout=20)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert waiter.returncode == 3, err
    assert f"task {slow} cancelled" in err

    unknown = wait_cli(flags, "987654")
    assert unknown.returncode == 66
    assert "no task with id 987654" in unknown.stderr
    bad = wait_cli(flags, str(dead), "--timeout", "soon")
    assert bad.returncode == 64
    assert "--timeout soon:" in bad.stderr


def _clean_env() -> dict[str, str]:
    import os  # noqa: PLC0415

    return {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")} | {
        "GLADD_ENV_FILE": ""
    }


async def _client_wait(url: str, task_id: int) -> tuple[gladd.Task, list[float]]:
    seen: list[float] = []

    def on_change(task: gladd.Task) -> None:
        if task.progress is not None:
            seen.append(task.progress.fraction)

    async with gladd.Client(url) as client:
        with anyio.fail_after(30):
            task = await client.wait(task_id, on_change=on_change)
    return task, seen


@pytest.mark.postgres
def test_client_wait_on_postgresql_is_woken_by_notify(
    node: LoggedGladd, api: httpx.Client, pg_database: str
) -> None:
    start(node, pg_database)
    task_id = enqueue(api, node, {"steps": 5, "ms": 300})
    task, seen = anyio.run(_client_wait, pg_database, task_id)
    woke = time.time()
    assert task.state is gladd.TaskState.SUCCEEDED
    assert task.result == {"steps": 5}
    assert seen, "progress heard while waiting"
    assert seen == sorted(seen)
    assert woke - finished_at(api, node, task_id) < WAIT_RECHECK / 2


def test_sync_client_wait_on_sqlite(node: LoggedGladd, api: httpx.Client) -> None:
    start(node)
    task_id = enqueue(api, node, {"steps": 2, "ms": 100, "fail": True})
    url = f"sqlite:///{node.state_dir / 'gladd.db'}"
    with gladd.SyncClient(url) as client:
        dead = client.wait(task_id, timeout="30s")
        assert dead.state is gladd.TaskState.DEAD
        assert dead.errors[-1].message.endswith("told to fail")
        with pytest.raises(gladd.UnknownTask):
            client.wait(987654)
