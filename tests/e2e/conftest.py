"""Run the real ``gladd`` console script as a child process, as systemd would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

GLADD = str(Path(sys.executable).parent / "gladd")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    path: Path
    sock: socket.socket = field(init=False)
    received: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait_for(self, key: str, timeout: float = 15.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append(message)
            if key in message:
                return message
        raise AssertionError(f"no {key} within {timeout}s; got {self.received}")


@dataclass
class Gladd:
    """One real ``gladd run`` process with its own state dir, port and notify socket."""

    tmp: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    notify: NotifySocket = field(init=False)

    def __post_init__(self) -> None:
        self.notify = NotifySocket(self.tmp / "notify.sock")
        self.state_dir = self.tmp / "state"
        self.policies = self.tmp / "policies.toml"
        repo = Path(__file__).resolve().parents[2]
        self.policies.write_text((repo / "policies.toml").read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
        # No env file unless a test gives one: never the host's /etc/gladd/gladd.env.
        env.update(GLADD_ENV_FILE="", NOTIFY_SOCKET=str(self.notify.path), **extra)
        return env

    def argv(self, *args: str) -> list[str]:
        """``gladd run`` on this node's policies, state directory and admin port."""
        return [
            GLADD,
            "run",
            "--policies",
            str(self.policies),
            "--state-dir",
            str(self.state_dir),
            "--admin-port",
            str(self.port),
            *args,
        ]

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        argv = self.argv(*args)
        self.process = subprocess.Popen(
            argv, env=self.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        return self.process

    def start_ready(self, *args: str, **env: str) -> dict[str, str]:
        """Started, READY, and the store's first open tried: READY does not wait for the
        database (it may be away), so a task posted at once could find it still opening
        (migrating); this waits until health has the first verdict, open or failing."""
        self.start(*args, **env)
        ready = self.notify.wait_for("READY")
        self._wait_store_verdict()
        return ready

    def _wait_store_verdict(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return  # exited: the test sees why
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                checks = self.get("/health").json()["checks"]
                if checks["database:connection"][0]["output"] != "not opened yet":
                    return
            time.sleep(0.02)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def stop(self, timeout: float = 15.0) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self.notify.sock.close()


@pytest.fixture
def gladd(tmp_path: Path) -> Iterator[Gladd]:
    instance = Gladd(tmp_path)
    yield instance
    instance.close()


def run_cli(
    *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``gladd ARGS`` with no GLADD_* from this environment; ``input``: what is typed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    return subprocess.run(
        [GLADD, *args],
        check=False,
        env={**clean, "GLADD_ENV_FILE": "", **(env or {})},
        input=input,
        capture_output=True,
        text=True,
        timeout=30,
    )


# -- helpers for the task tests (test_tasks_e2e.py, test_tasks_postgres_e2e.py) ------------


@dataclass
class LoggedGladd(Gladd):
    """A :class:`Gladd` whose output goes to a file per run instead of a pipe, so a chatty
    or long run can never block on a full pipe, and the log can be read while it runs."""

    runs: int = 0

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        self.runs += 1
        argv = self.argv(*args)
        with self.log_path.open("w") as out:
            self.process = subprocess.Popen(
                argv, env=self.env(**env), stdout=out, stderr=subprocess.STDOUT, text=True
            )
        return self.process

    @property
    def log_path(self) -> Path:
        return self.tmp / f"gladd-run{self.runs}.log"

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, self.log()

    def start_ready(self, *args: str, **env: str) -> dict[str, str]:
        """Like :meth:`Gladd.start_ready`, but a process that exits fails at once, with
        its log."""
        process = self.start(*args, **env)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                ready = self.notify.wait_for("READY", timeout=0.2)
            except AssertionError:
                if process.poll() is not None:
                    raise AssertionError(
                        f"gladd exited with {process.returncode} before READY:\n{self.log()}"
                    ) from None
            else:
                self._wait_store_verdict()
                return ready
        raise AssertionError(f"no READY within 15s:\n{self.log()}")

    def start_serving(self, *args: str, **env: str) -> None:
        """READY, then the task store open: READY does not wait for the database."""
        self.start_ready(*args, **env)

        def store_open() -> bool:
            checks = self.get("/health").json()["checks"]
            return bool(checks["database:connection"][0]["output"] == "open")

        wait_until(store_open, timeout=10, what="the task store open")

    def kill(self) -> str:
        """SIGKILL: no grace, no last writes — what a power cut or the OOM killer does."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        return self.log()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.notify.sock.close()


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    """An HTTP client for the nodes' admin APIs."""
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[[str], LoggedGladd]]:
    """``nodes("a")``: a :class:`LoggedGladd` with its own directory under tmp_path."""
    made: list[LoggedGladd] = []

    def make(name: str) -> LoggedGladd:
        home = tmp_path / name
        home.mkdir()
        node = LoggedGladd(home)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


# gladd.sleep with attempts to spare, for tests where an attempt may fail on purpose.
RETRIED = """
[retry.again]
attempts = 3
backoff = "constant"
base_delay = "10ms"
max_delay = "10ms"
deadline = "1h"

[tasks."gladd.sleep"]
retry = "again"
"""


def executor_policies(
    *,
    concurrency: int = 4,
    lease: str = "2s",
    heartbeat: str = "200ms",
    poll_interval: str = "100ms",
    shutdown_grace: str = "300ms",
    extra: str = "",
) -> str:
    """A small policies file with a fast executor; ``extra`` is appended verbatim."""
    return (
        "schema_version = 1\n\n[executor]\n"
        f"concurrency = {concurrency}\n"
        f'lease = "{lease}"\n'
        f'heartbeat = "{heartbeat}"\n'
        f'poll_interval = "{poll_interval}"\n'
        f'shutdown_grace = "{shutdown_grace}"\n'
        f"{extra}"
    )


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what or predicate} (last: {last!r})")


def cli_json(*args: str) -> Any:
    """``gladd ARGS --json``, which must succeed, decoded."""
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def by_state(api: httpx.Client, node: Gladd, state: str) -> list[dict[str, Any]]:
    found = api.get(f"{node.url}/tasks", params={"state": state, "limit": 1000})
    assert found.status_code == 200, found.text
    return found.json()["tasks"]  # type: ignore[no-any-return]


def enqueue(api: httpx.Client, node: Gladd, kind: str, payload: Any) -> int:
    made = api.post(f"{node.url}/tasks", json={"kind": kind, "payload": payload})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def await_state(api: httpx.Client, node: Gladd, task_id: int, state: str) -> dict[str, Any]:
    """Wait for one task to reach ``state`` (read through the daemon's API)."""

    def reached() -> dict[str, Any] | None:
        task: dict[str, Any] = api.get(f"{node.url}/tasks/{task_id}").json()
        return task if task["state"] == state else None

    return wait_until(reached, timeout=5, what=f"task {task_id} {state}")


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own (nodes, workers and tasks start empty)."""
    name = f"gladd_e2e_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    scheme, rest = postgres_url.split("://", 1)
    server = rest.rsplit("/", 1)[0]
    try:
        yield f"{scheme}://{server}/{name}"
    finally:
        asyncio.run(_pg_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class _Down(BaseHTTPRequestHandler):
    """Answers every GET with 503: a service that is down."""

    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[int]:
    """The port of a local HTTP server that answers every GET with 503."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Down)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test with a browser (tests/e2e/browser.py) takes one more screenshot, and
    its report lists every screenshot's path."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    window = getattr(item, "console_browser", None)
    if not report.failed or window is None:
        return
    try:
        window.shot(f"failed at {report.when}")
    except Exception as exc:  # a browser gone too: the paths still count
        report.sections.append(("console screenshots", f"(no screenshot at the failure: {exc})"))
    listed = "\n".join(str(path) for path in window.taken_paths)
    report.sections.append(("console screenshots", listed))
