"""``gladd tasks enqueue`` through the running daemon when it serves the CLI's store, and
straight into the store when it does not, or when no daemon answers: the same output and
exit codes either way (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GLADD, LoggedGladd, free_port, wait_until

pytestmark = pytest.mark.e2e

MISSING_POLICIES = "/nonexistent/policies.toml"
"""Given to the CLI, it makes the direct way fail (it loads the policies to validate a
task), so an enqueue that succeeds with it went through the daemon."""


def enqueue(
    *args: str, state: Path, port: int, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    return subprocess.run(
        [GLADD, "tasks", "enqueue", *args, "--state-dir", str(state), "--admin-port", str(port)],
        check=False,
        env={**clean, "GLADD_ENV_FILE": "", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def stored(state: Path) -> list[dict[str, Any]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    shown = subprocess.run(
        [GLADD, "tasks", "list", "--json", "--state-dir", str(state)],
        check=True,
        env={**clean, "GLADD_ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def node(nodes: Callable[[str], LoggedGladd]) -> LoggedGladd:
    serving = nodes("a")
    serving.start_serving()
    return serving


def test_an_enqueue_goes_through_the_daemon_is_stored_and_runs(node: LoggedGladd) -> None:
    done = enqueue(
        "gladd.noop",
        "--policies",
        MISSING_POLICIES,
        state=node.state_dir,
        port=node.port,
        TRACEPARENT="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    assert (done.returncode, done.stderr) == (0, "")
    task_id = int(done.stdout)

    def succeeded() -> bool:
        return bool(httpx.get(f"{node.url}/tasks/{task_id}").json()["state"] == "succeeded")

    wait_until(succeeded, timeout=10, what=f"task {task_id} succeeded")


def test_a_unique_key_held_is_said_the_same_through_the_daemon(node: LoggedGladd) -> None:
    args = ("gladd.sleep", "--payload", '{"seconds": 60}', "--delay", "1h", "--unique-key", "k1")
    first = enqueue(*args, "--policies", MISSING_POLICIES, state=node.state_dir, port=node.port)
    again = enqueue(*args, "--policies", MISSING_POLICIES, state=node.state_dir, port=node.port)
    assert (first.returncode, again.returncode) == (0, 0), again.stderr
    assert again.stdout == first.stdout
    assert again.stderr == (
        f"gladd: task {first.stdout.strip()} with unique key 'k1' already exists\n"
    )


def test_a_batch_goes_through_the_daemon_in_item_order(node: LoggedGladd) -> None:
    lines = '{"kind": "gladd.noop"}\n\n{"kind": "gladd.noop", "priority": 5}\n'
    done = enqueue(
        "--from-file",
        "-",
        "--policies",
        MISSING_POLICIES,
        state=node.state_dir,
        port=node.port,
        stdin=lines,
    )
    assert done.returncode == 0, done.stderr
    ids = [int(n) for n in done.stdout.split()]
    assert sorted(t["id"] for t in stored(node.state_dir)) == sorted(ids)
    assert len(ids) == 2


def test_a_refused_task_is_65_with_the_same_words_either_way(
    node: LoggedGladd, tmp_path: Path
) -> None:
    batch = tmp_path / "tasks.jsonl"
    batch.write_text(
        '{"kind": "gladd.noop"}\n{"kind": "gladd.sleep", "payload": {"seconds": "x"}}\n'
    )
    single = ("gladd.sleep", "--payload", '{"seconds": "soon"}')
    by_daemon = [
        enqueue(*single, state=node.state_dir, port=node.port),
        enqueue("--from-file", str(batch), state=node.state_dir, port=node.port),
        enqueue("gladd.nope", state=node.state_dir, port=node.port),
    ]
    direct_port = free_port()  # nothing listens there: the direct way
    direct = [
        enqueue(*single, state=node.state_dir, port=direct_port),
        enqueue("--from-file", str(batch), state=node.state_dir, port=direct_port),
        enqueue("gladd.nope", state=node.state_dir, port=direct_port),
    ]
    # A payload refused reads the same either way; an unknown kind too, but the direct way
    # (checked against the store's kinds catalogue) adds where its list of kinds came from.
    for daemon_way, direct_way in zip(by_daemon[:2], direct[:2], strict=True):
        assert daemon_way.returncode == direct_way.returncode == 65, daemon_way.stderr
        assert (daemon_way.stdout, daemon_way.stderr) == (direct_way.stdout, direct_way.stderr)
    for way in (by_daemon[2], direct[2]):
        assert way.returncode == 65, way.stderr
        assert way.stdout == ""
        assert way.stderr.startswith("gladd: unknown task kind 'gladd.nope'")
        assert way.stderr.endswith("(known kinds: gladd.noop, gladd.sleep, http.request)\n")
    assert "not in the catalogue the daemon published" in direct[2].stderr
    assert "seconds" in by_daemon[0].stderr  # the field is named
    assert f"{batch}:2: payload" in by_daemon[1].stderr
    assert stored(node.state_dir) == []  # all or nothing


def test_a_daemon_serving_another_store_is_not_used(node: LoggedGladd, tmp_path: Path) -> None:
    other = tmp_path / "other-state"
    made = subprocess.run(
        [GLADD, "db", "migrate", "--state-dir", str(other)],
        check=False,
        env={**os.environ, "GLADD_ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    done = enqueue("gladd.noop", state=other, port=node.port)
    assert done.returncode == 0, done.stderr
    assert [t["id"] for t in stored(other)] == [int(done.stdout)]
    assert stored(node.state_dir) == []
    # What the daemon answered (with the store's hash, not its URL).
    answer = httpx.post(
        f"{node.url}/tasks",
        json={"kind": "gladd.noop"},
        headers={"Gladd-Store-SHA256": "0" * 64},
    )
    assert answer.status_code == 421
    assert "another store" in answer.json()["error"]


def test_no_daemon_means_the_direct_way(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = subprocess.run(
        [GLADD, "db", "migrate", "--state-dir", str(state)],
        check=False,
        env={**os.environ, "GLADD_ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert made.returncode == 0, made.stderr
    done = enqueue("gladd.noop", state=state, port=free_port())
    assert done.returncode == 0, done.stderr
    assert [t["id"] for t in stored(state)] == [int(done.stdout)]
    # And without a store, the direct way's message: nothing was sent anywhere.
    missing = enqueue("gladd.noop", state=tmp_path / "none", port=free_port())
    assert missing.returncode == 69
    assert "nothing was created" in missing.stderr
