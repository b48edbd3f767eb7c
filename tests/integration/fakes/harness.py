"""The daemon's plugin wiring (its :class:`Runtime`) on an in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from gladd.admin.app import create_app
from gladd.executor.runner import Executor
from gladd.executor.service import TaskService
from gladd.plugins import PluginHost, discover_plugins
from gladd.policies import Policies, parse_policies
from gladd.resilience import BreakerState, Resilience
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store import Task, TaskState
from gladd.store.memory import MemoryStore

BASE = """
[executor]
concurrency = 8
heartbeat = "50ms"
lease = "2s"
poll_interval = "20ms"
shutdown_grace = "300ms"
retry = "task"

[retry.task]
attempts = 2
backoff = "constant"
base_delay = "20ms"
max_delay = "20ms"
jitter = "none"
deadline = "1h"

[retry.api]
attempts = 2
backoff = "constant"
base_delay = "10ms"
max_delay = "10ms"
jitter = "none"
deadline = "5s"
retry_after_cap = "3s"
budget = {{ ratio = 1.0, window = "10s", min_per_second = 100.0 }}

[breaker.api]
failures = 2
open_for = "300ms"
max_open_for = "300ms"
open_backoff = 1.0

[services.{service}]
retry = "api"
breaker = "api"
timeout = "300ms"
hosts = ["127.0.0.1"]
retry_non_idempotent = {retry_post}
"""

FINISHED = (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED)


def policies_for(service: str, *, retry_post: bool = True, extra: str = "") -> Policies:
    text = BASE.format(service=service, retry_post=str(retry_post).lower()) + extra
    return parse_policies(text.encode(), source="test").policies


@dataclass
class Run:
    runtime: Runtime
    policies: Policies
    store: MemoryStore
    service: TaskService
    executor: Executor
    host: PluginHost
    resilience: Resilience

    async def enqueue(self, kind: str, payload: Any) -> int:
        return (await self.service.enqueue(kind, payload)).id

    async def wait(self, task_id: int, *states: TaskState, timeout: float = 10.0) -> Task:
        states = states or FINISHED
        with anyio.fail_after(timeout):
            while True:
                task = await self.store.get(task_id)
                assert task is not None
                if task.state in states:
                    return task
                await anyio.sleep(0.01)

    async def run(self, kind: str, payload: Any, timeout: float = 10.0) -> Task:
        return await self.wait(await self.enqueue(kind, payload), timeout=timeout)

    def breaker_state(self, service: str) -> BreakerState:
        states = [
            b.state for (_, target), b in self.resilience.breakers().items() if target == service
        ]
        assert states, f"no breaker for {service}"
        return states[0]


@asynccontextmanager
async def running(
    policies: Policies, state_dir: Path, environ: Mapping[str, str] | None = None
) -> AsyncIterator[Run]:
    """The shipped plugins, discovered and served as the daemon's start-up does, on a
    memory store (through :class:`Runtime`, so the executor has its breakers too)."""
    settings = Settings(state_dir=state_dir, plugin_paths=())
    store = MemoryStore()
    runtime = Runtime(
        settings, policies, store=store, environ=environ or {}, entry_points=False, worker_id="w1"
    )
    discovery = discover_plugins(policies, entry_points=False, environ=environ or {})
    refused = [str(p) for p in discovery.problems if not p.inactive]
    assert not refused, refused
    runtime.load_plugins(discovery)
    await store.open()
    runtime.store_health.open()
    run = Run(
        runtime=runtime,
        policies=policies,
        store=store,
        service=runtime.tasks,
        executor=runtime.executor,
        host=runtime.plugins,
        resilience=runtime.resilience,
    )
    async with runtime.plugins.serving(), anyio.create_task_group() as tg:
        await tg.start(runtime.executor.run)
        try:
            yield run
        finally:
            runtime.executor.stop()
    await store.close()


@asynccontextmanager
async def admin_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on ``runtime``'s admin app, in process (httpx's ASGI transport), wired
    as the daemon wires it."""
    app = create_app(
        runtime.board,
        tasks=runtime.tasks,
        store_open=lambda: True,
        reload=runtime.reloader.reload,
        metrics=runtime.metrics.render,
    )
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client
