"""The cleaner, stepped on a manual clock: the first purge after start-up, then hourly."""

from __future__ import annotations

import anyio
import pytest

from gladd.maintenance.cleaner import PURGE_EVERY, Cleaner
from gladd.policies import parse_policies
from gladd.store import NewTask, Succeeded
from gladd.store.memory import MemoryStore
from tests.unit.executor.test_executor import FAST
from tests.unit.manual_clock import ManualClock

pytestmark = pytest.mark.anyio


async def test_finished_tasks_are_purged_hourly_once_past_the_retention() -> None:
    text = FAST.format(concurrency=1, grace="1s").replace(
        'lease = "2s"', 'lease = "4s"\nretention = "90m"'
    )
    p = parse_policies(text.encode(), source="test").policies
    store, clock = MemoryStore(), ManualClock()
    await store.open()
    await store.enqueue(NewTask(kind="t.any"), now=clock.now())
    (task,) = await store.claim(worker="w1", limit=1, now=clock.now())
    await store.finish([Succeeded(id=task.id, token=task.token)], now=clock.now())
    cleaner = Cleaner(store=store, policies=lambda: p, now=clock.now, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(cleaner.run)
        await clock.advance(2.0)  # half the lease: the first purge, of nothing yet
        assert await store.get(task.id) is not None
        await clock.advance(PURGE_EVERY)  # 1h: still within the 90 minutes
        assert await store.get(task.id) is not None
        await clock.advance(PURGE_EVERY)  # 2h: past them
        assert await store.get(task.id) is None
        tg.cancel_scope.cancel()
    assert clock.slept == [2.0, PURGE_EVERY, PURGE_EVERY, PURGE_EVERY]
