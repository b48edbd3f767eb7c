"""A task whose service call is refused by flow control is postponed, no attempt spent:
the executor with the in-memory store, the handler calling a real local HTTP server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gladd.errors import BulkheadFull, ServiceCooldown
from gladd.executor.kinds import TaskContext
from gladd.store import TaskState
from tests.unit.executor.test_executor import policies, running
from tests.unit.resilience.test_flow import base_url, seen  # noqa: F401 - the server fixture

pytestmark = pytest.mark.anyio

SERVICE = """
[services.api]
cooldown = true
"""


async def test_a_cooldown_releases_the_task_until_it_ends_with_the_attempt_refunded(base_url):  # noqa: F811
    refused: list[ServiceCooldown] = []

    async def call_api(ctx: TaskContext, payload: Any) -> None:
        async with httpx.AsyncClient(base_url=base_url, transport=transport) as http:
            try:
                await http.get("/answer", params={"id": "task-cool", "after": "30", "fail": "9"})
            except ServiceCooldown as exc:
                refused.append(exc)
                raise

    async with running({"t.api": call_api}, policies(extra=SERVICE)) as h:
        transport = h.runtime.resilience.transport("api")
        task_id = await h.enqueue("t.api")
        task = await h.put_off(task_id)
        h.executor.stop()
    assert (task.state, task.attempt) == (TaskState.PENDING, 0)
    assert task.run_at == refused[0].until
    assert seen.hits["task-cool"] == 1
    stats = h.executor.statistics()
    assert (stats.postponed, stats.postponed_by) == (1, {"cooldown": 1})


async def test_a_full_bulkhead_releases_the_task_after_max_wait():
    async def overloaded(ctx: TaskContext, payload: Any) -> None:
        raise BulkheadFull("api", 2, 3.0)

    async with running({"t.full": overloaded}) as h:
        task_id = await h.enqueue("t.full")
        task = await h.put_off(task_id)
        h.executor.stop()
    assert (task.state, task.attempt) == (TaskState.PENDING, 0)
    assert (task.run_at - task.updated_at).total_seconds() == pytest.approx(3.0, abs=0.5)
    assert h.executor.statistics().postponed_by == {"bulkhead": 1}
