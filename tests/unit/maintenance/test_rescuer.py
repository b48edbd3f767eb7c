"""The rescuer, stepped on a manual clock: the start-up rescue, then every half lease."""

from __future__ import annotations

import anyio
import pytest

from gladd.maintenance.rescuer import Rescuer
from gladd.store import NewTask, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.executor.test_executor import policies
from tests.unit.manual_clock import ManualClock

pytestmark = pytest.mark.anyio


async def left_running(store: MemoryStore, clock: ManualClock) -> int:
    """A task claimed by a worker that has just heartbeated, and then is heard no more."""
    await store.enqueue(NewTask(kind="t.any"), now=clock.now())
    (task,) = await store.claim(worker="gone", limit=1, now=clock.now())
    await store.heartbeat(worker="gone", now=clock.now(), running=[(task.id, task.token)])
    return task.id


async def state_of(store: MemoryStore, task_id: int) -> TaskState:
    task = await store.get(task_id)
    assert task is not None
    return task.state


@pytest.mark.parametrize("single_process", [True, False])
async def test_the_start_up_rescue_takes_everything_back_only_on_a_single_process_store(
    single_process: bool,
) -> None:
    store, clock = MemoryStore(), ManualClock()
    await store.open()
    task_id = await left_running(store, clock)
    p = policies()
    rescuer = Rescuer(
        store=store,
        policies=lambda: p,
        now=clock.now,
        clock=clock,
        rescue_all_at_start=single_process,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(rescuer.run)  # the start-up rescue is done by now
        expected = TaskState.PENDING if single_process else TaskState.RUNNING
        assert await state_of(store, task_id) is expected
        assert rescuer.rescued == (1 if single_process else 0)
        tg.cancel_scope.cancel()


async def test_a_silent_workers_task_is_rescued_once_its_lease_has_run_out() -> None:
    store, clock = MemoryStore(), ManualClock()
    await store.open()
    task_id = await left_running(store, clock)
    p = policies()  # lease 2s: a rescue every second
    rescuer = Rescuer(store=store, policies=lambda: p, now=clock.now, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(rescuer.run)
        await clock.advance(1.0)
        assert await state_of(store, task_id) is TaskState.RUNNING  # heard 1s ago
        await clock.advance(1.0)
        assert await state_of(store, task_id) is TaskState.PENDING  # 2s: the lease is over
        tg.cancel_scope.cancel()
    assert clock.slept == [1.0, 1.0, 1.0]
    assert rescuer.rescued == 1
