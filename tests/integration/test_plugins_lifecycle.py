"""What the host owns it closes: no descriptor survives a start/stop cycle and 1,000 tasks;
a reload replaces a changed service's client without cutting a request in flight; sync
handlers run off the event loop."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from loguru import logger

from gladd.executor.kinds import TaskContext
from gladd.plugins import Plugin, PluginHost, TaskKind
from gladd.resilience import Resilience
from gladd.store import Task, TaskState
from tests.integration.fakes.harness import policies_for, running

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TASKS = 1000


def descriptors() -> tuple[int, int]:
    """(all descriptors, sockets) of this process."""
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return len(fds), sockets


@pytest.fixture(scope="module")
def webhook() -> Iterator[str]:
    """The receiver in a process of its own, so its sockets are not counted as ours."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.fakes.webhook", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(5)


async def test_no_descriptor_survives_a_cycle_and_a_thousand_tasks(
    webhook: str, tmp_path: Path
) -> None:
    p = policies_for("hooks")
    p = p.model_copy(update={"executor": p.executor.model_copy(update={"concurrency": 16})})
    before = descriptors()
    peak = before
    async with running(p, tmp_path) as run:
        ids = [
            await run.enqueue("http.request", {"method": "GET", "url": f"{webhook}/n/{n}"})
            for n in range(TASKS)
        ]
        done = []
        for i in ids:
            done.append(await run.wait(i, timeout=30))
            peak = max(peak, descriptors())
    after = descriptors()
    assert all(t.state is TaskState.SUCCEEDED for t in done), {t.state for t in done}
    print(f"descriptors (all, sockets): before {before}, peak while running {peak}, after {after}")
    assert after == before
    assert list((tmp_path / "scratch").iterdir()) == []


async def test_reload_replaces_a_changed_client_after_its_last_request(
    webhook: str, tmp_path: Path
) -> None:
    started, release = anyio.Event(), anyio.Event()
    seen: list[httpx.AsyncClient] = []

    async def slow(ctx: TaskContext, payload: Any) -> int:
        seen.append(ctx.http["hooks"])
        started.set()
        await release.wait()
        response = await ctx.http["hooks"].get(f"{webhook}/late")
        return response.status_code

    plugin = Plugin(name="t", services=("hooks",), kinds=[TaskKind(name="t.slow", handler=slow)])
    old = policies_for("hooks")
    new = policies_for("hooks").model_copy(
        update={"services": {"hooks": old.services["hooks"].model_copy(update={"timeout": 1.0})}}
    )
    current = old
    resilience = Resilience(old)
    host = PluginHost([plugin], lambda: current, resilience, tmp_path, environ={})
    async with host.serving():
        first = host.clients()["hooks"]
        results: list[int] = []

        async def attempt() -> None:
            async with host.context_for(_task("t.slow"), _logger(), _enqueue) as ctx:
                results.append(await slow(ctx, None))

        async with anyio.create_task_group() as tg:
            tg.start_soon(attempt)
            await started.wait()
            current = new
            resilience.apply(new)
            host.apply(new)
            assert host.clients()["hooks"] is not first
            assert not first.is_closed  # an attempt still uses it
            release.set()
        assert results == [200]
        assert first.is_closed
        unchanged = host.clients()["hooks"]
        host.apply(new)
        assert host.clients()["hooks"] is unchanged
        host.apply(old)  # an idle client is closed at once
        await anyio.sleep(0.05)
        assert unchanged.is_closed
        last = host.clients()["hooks"]
    assert last.is_closed


async def test_a_sync_handler_does_not_block_the_loop(webhook: str, tmp_path: Path) -> None:
    def blocking(ctx: TaskContext, payload: Any) -> int:
        time.sleep(0.5)  # a plain def: runs in a worker thread
        response = anyio.from_thread.run(ctx.http["hooks"].get, f"{webhook}/sync")
        return response.status_code

    plugin = Plugin(
        name="t", services=("hooks",), kinds=[TaskKind(name="t.block", handler=blocking)]
    )
    p = policies_for("hooks")
    host = PluginHost([plugin], lambda: p, Resilience(p), tmp_path, environ={})
    (kind,) = host.kinds()
    assert not kind.is_async
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with host.serving(), anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with host.context_for(_task("t.block"), _logger(), _enqueue) as ctx:
            status = await anyio.to_thread.run_sync(kind.handler, ctx, None)
        tg.cancel_scope.cancel()
    assert status == 200
    # The loop kept ticking through the handler's half-second sleep (the ticker starts a
    # moment after the thread, hence a little less than 0.5 s of ticks in all). Run on the
    # loop, the sleep would show as one gap of 0.5 s; a busy machine may delay a tick or
    # two by far less.
    assert sum(gaps) >= 0.4
    assert max(gaps) < 0.3, gaps


def _task(kind: str) -> Task:
    now = datetime.now(UTC)
    return Task(
        id=1,
        kind=kind,
        payload={},
        state=TaskState.RUNNING,
        priority=0,
        run_at=now,
        attempt=1,
        max_attempts=1,
        timeout=None,
        unique_key=None,
        owner="w",
        token=1,
        rescues=0,
        deadline=None,
        cancel_requested=False,
        result=None,
        errors=(),
        created_at=now,
        updated_at=now,
        finished_at=None,
    )


def _logger() -> Any:
    return logger


async def _enqueue(*args: Any, **kwargs: Any) -> int:
    return 0
