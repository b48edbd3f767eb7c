"""The executor's stop-now path (the paced retries of outcome writes: test_completer)."""

from __future__ import annotations

import time

import anyio
import pytest

from gladd.executor.kinds import TaskContext
from gladd.store import TaskState
from tests.unit.executor.test_executor import policies, running

pytestmark = pytest.mark.anyio


async def test_stop_now_releases_running_tasks_at_once_without_spending_an_attempt() -> None:
    started = anyio.Event()

    async def long(ctx: TaskContext, payload: object) -> None:
        started.set()
        await anyio.sleep(60)

    async with running({"t.long": long}, policies(grace="30s")) as h:
        task_id = await h.enqueue("t.long")
        await started.wait()
        began = time.monotonic()
        h.executor.stop_now()
        released = await h.wait_for(task_id, TaskState.PENDING)
    assert time.monotonic() - began < 2  # not the 30s grace
    assert released.attempt == 0
    assert released.owner is None
    assert h.executor.unreleased == []
