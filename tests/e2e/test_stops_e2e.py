"""Timeouts and stops that mean what they say, on the real process: a trickled body, a
second SIGTERM, Ctrl-C during start-up, a corrupt SQLite file."""

from __future__ import annotations

import queue
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e._proxy import TcpProxy
from tests.e2e.conftest import (
    Gladd,
    LoggedGladd,
    await_state,
    cli_json,
    enqueue,
    executor_policies,
    wait_until,
)

pytestmark = pytest.mark.e2e

Nodes = Callable[[str], LoggedGladd]


def _lines(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """Every line of ``stream`` as it arrives, read by a thread (joined at EOF)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def test_ctrl_c_while_the_command_is_still_importing_exits_quietly_with_130(
    gladd: Gladd,
) -> None:
    # Python reports each import as it finishes (-X importtime): the interrupt lands while
    # the rest of gladd is still being imported, well before the daemon handles signals.
    process = subprocess.Popen(
        gladd.argv(),
        env=gladd.env(PYTHONPROFILEIMPORTTIME="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    gladd.process = process
    assert process.stderr is not None
    lines, pump = _lines(process.stderr)
    seen: list[str] = []
    while not any(re.search(r"\|\s+gladd\.errors$", line.rstrip()) for line in seen[-1:]):
        seen.append(lines.get(timeout=30))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    pump.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(line for line in seen if not line.startswith("import time:"))
    assert "Traceback" not in output, output
    assert "KeyboardInterrupt" not in output, output


# -- a service's attempt timeout bounds a slow body ----------------------------------------


class _Trickle(BaseHTTPRequestHandler):
    """Headers at once, then one byte a second: each read is quick, the body is not."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "60")
        self.end_headers()
        try:
            for _ in range(60):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(1)
        except OSError:  # gladd hung up: what the test wants
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def trickle() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


TRICKLE_POLICIES = """
[executor]
task_timeout = "30s"
retry = "once"
[retry.once]
attempts = 1
deadline = "1h"
[services.slow]
timeout = "2s"
hosts = ["127.0.0.1:{port}"]
"""


def test_a_trickled_body_fails_the_attempt_at_the_service_timeout(
    nodes: Nodes, trickle: int, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(TRICKLE_POLICIES.format(port=trickle))
    node.start_serving()
    url = f"http://127.0.0.1:{trickle}/slow"
    began = time.monotonic()
    task_id = enqueue(api, node, "http.request", {"method": "GET", "url": url})

    def finished() -> dict[str, Any] | None:
        task: dict[str, Any] = api.get(f"{node.url}/tasks/{task_id}").json()
        return task if task["state"] in ("dead", "succeeded") else None

    task = wait_until(finished, timeout=25, what="the attempt ended")
    took = time.monotonic() - began
    assert task["state"] == "dead", task
    assert took < 12, f"held {took:.1f}s: the task timeout (30s), not the service's 2s"
    last = task["errors"][-1]
    assert "service slow did not answer in time" in last["message"], last
    assert "timed out after 2s" in last["message"], last


# -- a second stop signal: stop now, but release what can be released ----------------------


def _stop_twice(node: LoggedGladd) -> tuple[int, float]:
    """SIGTERM, wait until the daemon is stopping, SIGTERM again: (exit code, seconds)."""
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "running tasks have 30s to finish" in node.log(), timeout=10)
    began = time.monotonic()
    node.process.send_signal(signal.SIGTERM)
    code = node.process.wait(timeout=20)
    return code, time.monotonic() - began


def test_a_second_sigterm_releases_running_tasks_at_once_without_spending_an_attempt(
    nodes: Nodes, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(shutdown_grace="30s"))
    node.start_serving()
    task_id = enqueue(api, node, "gladd.sleep", {"seconds": 120})
    await_state(api, node, task_id, "running")

    code, took = _stop_twice(node)
    log = node.log()
    assert code == 0, log
    assert took < 6, f"took {took:.1f}s"  # not the 30s grace
    assert "SIGTERM received again: stopping now, releasing running tasks" in log
    assert "could not be released" not in log
    shown = cli_json(
        "tasks", "show", str(task_id), "--state-dir", str(node.state_dir),
        "--policies", str(node.policies),
    )  # fmt: skip
    assert shown["state"] == "pending", shown
    assert shown["attempt"] == 0, shown  # the attempt was refunded, not spent
    assert shown.get("rescues", 0) == 0, shown


@pytest.mark.postgres
def test_a_second_sigterm_with_the_database_gone_says_what_it_could_not_release(
    nodes: Nodes, pg_database: str, api: httpx.Client
) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(shutdown_grace="30s", lease="10s"))
    with TcpProxy() as proxy:
        proxy.resume()
        node.start_serving("--database-url", proxy.url_for(pg_database))
        task_id = enqueue(api, node, "gladd.sleep", {"seconds": 120})
        await_state(api, node, task_id, "running")
        proxy.pause()  # the release can no longer be written

        code, took = _stop_twice(node)
    log = node.log()
    assert code == 75, log  # EX_TEMPFAIL: stopped, but a task waits for a lease rescue
    assert took < 10, f"took {took:.1f}s"
    assert f"1 task(s) could not be released: {task_id}; they stay running" in log
    shown = cli_json(
        "tasks", "show", str(task_id), "--database-url", pg_database,
        "--policies", str(node.policies),
    )  # fmt: skip
    assert shown["state"] == "running", shown  # until a rescue, as the log line says


# -- a corrupt SQLite file is a configuration error at start-up ----------------------------


def _noise(path: Path) -> None:
    path.write_bytes(random.Random(1).randbytes(8192))


def _malformed(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 100,) for _ in range(100)])
    db.close()
    data = bytearray(path.read_bytes())
    data[100:4096] = random.Random(2).randbytes(4096 - 100)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "words"),
    [(_noise, "is not a SQLite database"), (_malformed, "database disk image is malformed")],
)
def test_a_corrupt_sqlite_file_stops_the_start_with_69_and_the_reason(
    nodes: Nodes, damage: Callable[[Path], None], words: str
) -> None:
    node = nodes("a")
    node.state_dir.mkdir(parents=True)
    damage(node.state_dir / "gladd.db")
    process = node.start()
    code = process.wait(timeout=20)  # not a retry loop that never ends
    log = node.log()
    assert code == 69, log
    assert "gladd: the task store cannot be used: " in log, log
    assert words in log, log
    assert "Traceback" not in log, log
