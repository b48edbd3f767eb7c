"""Tasks through the real daemon on the default SQLite store, as an operator sees them.

Every test runs real ``gladd run`` processes and talks to them the way people do: the
``gladd tasks`` CLI (straight to the store) and the admin API (through the daemon).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    LoggedGladd,
    await_state,
    by_state,
    cli_json,
    enqueue,
    executor_policies,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

Nodes = Callable[[str], LoggedGladd]


def store_args(node: LoggedGladd) -> tuple[str, ...]:
    return ("--state-dir", str(node.state_dir), "--policies", str(node.policies))


def tasks(node: LoggedGladd, *args: str) -> Any:
    """``gladd tasks ARGS --json`` against the node's store, decoded."""
    return cli_json("tasks", *args, *store_args(node))


def cli(node: LoggedGladd, *args: str) -> Any:
    return run_cli("tasks", *args, *store_args(node))


def test_tasks_enqueued_by_cli_and_http_run_and_show_their_results(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies())
    node.start_serving()

    done = cli(node, "enqueue", "gladd.sleep", "--payload", '{"seconds": 0.05}')
    assert done.returncode == 0, done.stderr
    by_cli = int(done.stdout.strip())
    noop = int(cli(node, "enqueue", "gladd.noop").stdout.strip())
    made = api.post(f"{node.url}/tasks", json={"kind": "gladd.sleep", "payload": {"seconds": 0}})
    assert made.status_code == 201
    assert made.json() == {"id": made.json()["id"], "created": True}
    by_http = made.json()["id"]
    assert len({by_cli, noop, by_http}) == 3

    # A unique key deduplicates while its task is unfinished (delayed here, so it waits):
    # the second request answers 200 with the first task's id.
    keyed = {"kind": "gladd.noop", "unique_key": "nightly", "delay": "1h"}
    first = api.post(f"{node.url}/tasks", json=keyed)
    again = api.post(f"{node.url}/tasks", json=keyed)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {"id": first.json()["id"], "created": False}
    waiting = first.json()["id"]

    wait_until(
        lambda: len(by_state(api, node, "succeeded")) == 3, timeout=5, what="3 tasks succeed"
    )
    listed = {t["id"]: t for t in tasks(node, "list")}
    assert set(listed) == {by_cli, noop, by_http, waiting}
    assert {listed[i]["state"] for i in (by_cli, noop, by_http)} == {"succeeded"}
    assert (listed[waiting]["state"], listed[waiting]["unique_key"]) == ("pending", "nightly")
    assert listed[by_cli]["result"] == {"slept": 0.05}
    assert listed[by_http]["result"] == {"slept": 0.0}
    assert listed[noop]["result"] is None
    assert [
        t["id"] for t in tasks(node, "list", "--state", "succeeded", "--kind", "gladd.noop")
    ] == [noop]

    shown = tasks(node, "show", str(by_cli))
    assert shown["kind"] == "gladd.sleep"
    assert shown["payload"] == {"seconds": 0.05}
    assert (shown["attempt"], shown["token"], shown["errors"]) == (1, 1, [])
    assert shown["finished_at"] is not None
    assert api.get(f"{node.url}/tasks/{by_cli}").json() == shown  # CLI and API agree

    human = cli(node, "show", str(by_cli))
    assert human.returncode == 0
    assert f"task {by_cli}: gladd.sleep (succeeded)" in human.stdout
    assert 'result: {"slept": 0.05}' in human.stdout
    code, log = node.stop()
    assert code == 0, log


def test_refused_tasks_get_a_precise_error_and_store_nothing(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies())
    node.start_serving()
    known = "(known kinds: gladd.noop, gladd.sleep, http.request)"

    unknown = cli(node, "enqueue", "gladd.nope")
    assert unknown.returncode == 65
    # Straight to the store, checked against the catalogue the node published at its start.
    assert unknown.stderr.startswith(
        "gladd: unknown task kind 'gladd.nope': not in the catalogue the daemon published at "
    )
    assert unknown.stderr.endswith(f"{known}\n")
    answer = api.post(f"{node.url}/tasks", json={"kind": "gladd.nope"})
    assert answer.status_code == 422
    assert answer.json() == {"error": f"unknown task kind 'gladd.nope' {known}"}

    malformed = cli(node, "enqueue", "gladd.noop", "--payload", "{seconds: 1")
    assert malformed.returncode == 65
    assert malformed.stderr.startswith("gladd: --payload is not valid JSON: ")
    answer = api.post(
        f"{node.url}/tasks", content=b'{"kind": "gladd.noop", ', headers={"content-type": "json"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("body is not valid JSON: ")
    answer = api.post(f"{node.url}/tasks", json={"kind": "gladd.noop", "colour": "red"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "colour: Extra inputs are not permitted"}

    negative = cli(node, "enqueue", "gladd.sleep", "--payload", '{"seconds": -1}')
    assert negative.returncode == 65
    invalid = "payload for gladd.sleep is invalid: seconds: Input should be greater than or equal"
    assert negative.stderr.startswith(f"gladd: {invalid}")
    answer = api.post(f"{node.url}/tasks", json={"kind": "gladd.sleep", "payload": {"seconds": -1}})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(invalid)

    huge = b'{"kind": "gladd.noop", "payload": "' + b"x" * (1024 * 1024) + b'"}'
    answer = api.post(f"{node.url}/tasks", content=huge)
    assert answer.status_code == 413
    assert answer.json() == {"error": "request body over 1048576 bytes"}
    # Without a Content-Length (chunked), the limit holds while the body streams in.
    chunks = iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)])
    answer = api.post(f"{node.url}/tasks", content=chunks)
    assert answer.status_code == 413

    missing = cli(node, "show", "999")
    assert (missing.returncode, missing.stderr) == (66, "gladd: no task with id 999\n")
    assert api.get(f"{node.url}/tasks/999").status_code == 404
    assert api.post(f"{node.url}/tasks/999/cancel").json() == {"error": "no task with id 999"}
    assert run_cli("tasks", "retry", "999", *store_args(node)).returncode == 66

    mysql = cli(node, "list", "--database-url", "mysql://x")
    assert mysql.returncode == 78
    assert "unsupported scheme 'mysql'" in mysql.stderr
    assert "sqlite:///PATH, postgresql://USER@HOST/DB" in mysql.stderr

    assert tasks(node, "list") == []  # nothing refused was stored
    code, log = node.stop()
    assert code == 0
    for out in (unknown, malformed, negative, missing, mysql):
        assert "Traceback" not in out.stderr
    assert "Traceback" not in log


def test_cancel_and_retry_refuse_what_the_state_forbids_and_say_so(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies())
    node.start_serving()
    done = enqueue(api, node, "gladd.noop", None)
    await_state(api, node, done, "succeeded")
    later = api.post(f"{node.url}/tasks", json={"kind": "gladd.noop", "delay": "1h"}).json()["id"]

    cancel = cli(node, "cancel", str(done))
    assert (cancel.returncode, cancel.stdout) == (1, "")
    assert cancel.stderr == (
        f"gladd: task {done} is succeeded; only pending or running tasks can be cancelled\n"
    )
    retry = cli(node, "retry", str(done))
    assert retry.returncode == 1
    assert retry.stderr == (
        f"gladd: task {done} is succeeded; only dead or cancelled tasks can be retried\n"
    )
    assert cli(node, "retry", str(later)).returncode == 1
    answer = api.post(f"{node.url}/tasks/{done}/cancel")
    assert answer.status_code == 409
    assert answer.json() == {
        "error": f"task {done} is succeeded; only pending or running tasks can be cancelled"
    }
    assert api.post(f"{node.url}/tasks/{later}/retry").status_code == 409
    # What is allowed still works, and a second cancel of the same task is refused.
    assert cli(node, "cancel", str(later)).stdout == f"task {later}: cancelled\n"
    assert cli(node, "cancel", str(later)).returncode == 1
    assert cli(node, "retry", str(later)).stdout == f"task {later}: pending\n"
    assert tasks(node, "show", str(done))["state"] == "succeeded"  # the refusals changed nothing

    # Input no store could serve back is refused at the door; listing keeps working.
    poison = b'{"kind": "gladd.noop", "payload": {"x": "\\udfff"}}'
    answer = api.post(f"{node.url}/tasks", content=poison)
    assert answer.status_code == 422
    assert "payload.x: contains a lone surrogate" in answer.json()["error"]
    unbound = {"kind": "http.request", "payload": {"url": "http://localhost:9/x"}}
    answer = api.post(f"{node.url}/tasks", json=unbound)
    assert answer.status_code == 422
    assert "http: no service claims host localhost" in answer.json()["error"]
    assert api.get(f"{node.url}/tasks").status_code == 200
    deep = cli(node, "enqueue", "gladd.noop", "--payload", "[" * 5000 + "]" * 5000)
    assert (deep.returncode, deep.stderr) == (
        65,
        "gladd: --payload is nested too deeply to decode\n",
    )
    lone = cli(node, "enqueue", "gladd.noop", "--payload", '{"x": "\\udfff"}')
    assert lone.returncode == 65
    assert "payload.x: contains a lone surrogate (\\udfff)" in lone.stderr
    code, log = node.stop()
    assert code == 0
    assert "Traceback" not in log


def test_the_admin_token_guards_task_routes_but_not_health(nodes: Nodes) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies())
    node.start_serving(GLADD_ADMIN_TOKEN="s3cret-token")
    body = {"kind": "gladd.noop"}

    with httpx.Client(base_url=node.url, timeout=5) as api:
        anonymous = api.post("/tasks", json=body)
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == 'Bearer realm="gladd"'
        assert anonymous.json() == {"error": "this route needs Authorization: Bearer TOKEN"}
        wrong = api.post("/tasks", json=body, headers={"Authorization": "Bearer guess"})
        assert (wrong.status_code, wrong.json()) == (401, {"error": "wrong admin token"})
        assert api.get("/tasks").status_code == 401

        right = {"Authorization": "Bearer s3cret-token"}
        made = api.post("/tasks", json=body, headers=right)
        assert made.status_code == 201
        assert api.get("/tasks", headers=right).json()["tasks"][0]["id"] == made.json()["id"]
        for path in ("/health", "/health/live", "/health/ready"):
            assert api.get(path).status_code == 200, path
    code, log = node.stop()
    assert code == 0
    assert "s3cret-token" not in log


def test_kill_9_loses_nothing_and_reruns_only_what_was_running(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(
        # No retry policy: one attempt each. A crash is not the task's failure, so even
        # single-attempt tasks run again after it.
        executor_policies(concurrency=4, lease="1s", poll_interval="50ms")
    )
    node.start_serving()
    ids = [enqueue(api, node, "gladd.sleep", {"seconds": 0.2}) for _ in range(40)]

    def midway() -> bool:
        return len(by_state(api, node, "succeeded")) >= 4 and bool(by_state(api, node, "running"))

    wait_until(midway, timeout=10, interval=0.02, what="some succeeded, some running")
    node.kill()

    # What the store says was running at the kill: exactly those may run twice.
    at_kill = {t["id"] for t in tasks(node, "list", "--state", "running")}
    done_before = {t["id"] for t in tasks(node, "list", "--state", "succeeded")}
    assert 1 <= len(at_kill) <= 4  # concurrency 4
    assert done_before

    node.start_serving()  # SQLite: one process owns the file, so it rescues at start
    wait_until(
        lambda: len(by_state(api, node, "succeeded")) == 40, timeout=15, what="all 40 succeed"
    )
    final = {t["id"]: t for t in tasks(node, "list", "--limit", "100")}
    assert sorted(final) == sorted(ids)  # none lost
    assert all(t["result"] == {"slept": 0.2} for t in final.values())
    rerun = {i for i, t in final.items() if t["token"] > 1}
    assert rerun == at_kill  # claimed again: only what was running at the kill
    for task_id in at_kill:
        task = final[task_id]
        assert (task["rescues"], task["attempt"]) == (1, 2)
        assert [e["type"] for e in task["errors"]] == ["Rescued"]
        assert "stopped heartbeating; attempt taken back" in task["errors"][0]["message"]
    for task_id in set(ids) - at_kill:  # claimed once, run once
        task = final[task_id]
        assert (task["token"], task["attempt"], task["rescues"], task["errors"]) == (1, 1, 0, [])
    code, log = node.stop()
    assert code == 0
    assert f"rescued {len(at_kill)} task(s) back to pending" in log


def test_sigterm_releases_a_running_task_without_spending_its_attempt(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(shutdown_grace="300ms"))
    node.start_serving()
    task_id = enqueue(api, node, "gladd.sleep", {"seconds": 30})
    await_state(api, node, task_id, "running")

    started = time.monotonic()
    code, log = node.stop()
    assert code == 0, log
    assert time.monotonic() - started < 5  # 300 ms grace, not the 30 s sleep
    assert "grace over: releasing 1 task(s) to pending" in log

    task = tasks(node, "show", str(task_id))
    assert task["state"] == "pending"
    assert task["attempt"] == 0  # refunded: a stop is not a failure
    assert (task["owner"], task["errors"], task["rescues"]) == (None, [], 0)

    # The next start picks it up again (nothing lost, nothing rescued).
    node.start_serving()
    await_state(api, node, task_id, "running")
    assert node.stop()[0] == 0


def test_cancel_stops_a_running_task_within_a_couple_of_heartbeats(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(heartbeat="200ms"))
    node.start_serving()
    by_cli = enqueue(api, node, "gladd.sleep", {"seconds": 30})
    by_http = enqueue(api, node, "gladd.sleep", {"seconds": 30})
    await_state(api, node, by_cli, "running")
    await_state(api, node, by_http, "running")

    done = cli(node, "cancel", str(by_cli))
    started = time.monotonic()  # the request is stored: from here on it is the worker's
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"task {by_cli}: running (cancellation requested; its worker stops it)\n"
    )
    answer = api.post(f"{node.url}/tasks/{by_http}/cancel")
    assert answer.status_code == 200
    assert (answer.json()["state"], answer.json()["cancel_requested"]) == ("running", True)

    for task_id in (by_cli, by_http):
        task = await_state(api, node, task_id, "cancelled")
        assert task["finished_at"] is not None
    # Heartbeats every 200 ms carry the request: seconds at most, not the 30 s sleep.
    assert time.monotonic() - started < 5
    # The node goes on working.
    after = enqueue(api, node, "gladd.noop", None)
    await_state(api, node, after, "succeeded")
    code, log = node.stop()
    assert code == 0
    assert f"task {by_cli} (gladd.sleep) cancelled by request" in log
    assert f"task {by_http} (gladd.sleep) cancelled by request" in log


DEAD_LETTER = """
[retry.quick]
attempts = 2
backoff = "constant"
base_delay = "10ms"
max_delay = "10ms"
jitter = "none"
on = ["timeout"]

[tasks."gladd.sleep"]
timeout = "{timeout}"
retry = "quick"
"""


def test_timeouts_dead_letter_a_task_and_retry_requeues_it(nodes: Nodes, api: httpx.Client) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(extra=DEAD_LETTER.format(timeout="50ms")))
    node.start_serving()
    task_id = enqueue(api, node, "gladd.sleep", {"seconds": 0.3})

    dead = await_state(api, node, task_id, "dead")
    assert dead["attempt"] == dead["max_attempts"] == 2
    assert [(e["type"], e["attempt"]) for e in dead["errors"]] == [
        ("gladd.errors.TaskTimeout", 1),
        ("gladd.errors.TaskTimeout", 2),
    ]
    assert dead["errors"][0]["message"] == "attempt timed out after 0.05s"
    assert [t["id"] for t in tasks(node, "list", "--state", "dead")] == [task_id]

    # Requeued with nothing changed, it dies the same way again, its history kept.
    requeued = cli(node, "retry", str(task_id))
    assert (requeued.returncode, requeued.stdout) == (0, f"task {task_id}: pending\n")
    wait_until(
        lambda: len(api.get(f"{node.url}/tasks/{task_id}").json()["errors"]) == 4,
        timeout=5,
        what="dead again",
    )
    assert await_state(api, node, task_id, "dead")["attempt"] == 2

    # The operator gives the kind a longer timeout, restarts, and retries over HTTP.
    assert node.stop()[0] == 0
    node.policies.write_text(executor_policies(extra=DEAD_LETTER.format(timeout="5s")))
    node.start_serving()
    answer = api.post(f"{node.url}/tasks/{task_id}/retry")
    assert answer.status_code == 200
    assert answer.json()["state"] == "pending"
    ok = await_state(api, node, task_id, "succeeded")
    assert ok["result"] == {"slept": 0.3}
    assert ok["attempt"] == 1
    assert len(ok["errors"]) == 4
    assert node.stop()[0] == 0
    assert (
        f"task {task_id} (gladd.sleep) attempt 2/2 failed: gladd.errors.TaskTimeout"
        in (node.tmp / "gladd-run1.log").read_text()
    )
