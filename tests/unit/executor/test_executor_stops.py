"""The executor's stop-now path, and its paced retries of outcome writes."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime

import anyio
import pytest

from gladd.errors import StoreUnavailable
from gladd.executor.kinds import Kind, KindRegistry, TaskContext, builtin_kinds
from gladd.executor.runner import Executor
from gladd.executor.service import TaskService
from gladd.resilience.pacing import STORE_BACKOFF, capped
from gladd.store import Outcome, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.executor.test_executor import policies, running

pytestmark = pytest.mark.anyio


class FlakyFinish(MemoryStore):
    """A memory store whose first ``failures`` outcome writes fail as a lost database's do."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("the database went away")
        return await super().finish(outcomes, now=now)


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


async def test_a_failed_outcome_write_is_retried_after_a_jittered_backoff() -> None:
    slept: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        slept.append(seconds)
        await anyio.sleep(0)

    store = FlakyFinish(failures=6)
    await store.open()
    kinds = KindRegistry(builtin_kinds())
    kinds.register(Kind(name="t.ok", handler=lambda ctx, payload: "done", plugin="test"))
    p = policies()  # database.retry unset: the default store backoff, capped at a heartbeat
    executor = Executor(
        store=store,
        kinds=kinds,
        policies=lambda: p,
        worker_id="w1",
        rng=random.Random(11),
        sleep=recorded_sleep,
    )
    task = await TaskService(store, kinds, lambda: p).enqueue("t.ok", None)
    async with anyio.create_task_group() as tg:
        await tg.start(executor.run)
        with anyio.fail_after(5):
            while (found := await store.get(task.task.id)) is None or not found.state.finished:
                await anyio.sleep(0.005)
        executor.stop()
    assert found.state is TaskState.SUCCEEDED
    assert len(slept) == 6
    backoff = capped(STORE_BACKOFF, p.executor.heartbeat)
    ceilings = [backoff.ceiling(n) for n in range(1, 7)]
    assert ceilings[-1] == 0.05  # the heartbeat
    assert all(0 <= d <= c for d, c in zip(slept, ceilings, strict=True))
    assert slept != ceilings  # jittered, not the bare schedule
    assert len(set(slept)) == 6  # and not a fixed rhythm
