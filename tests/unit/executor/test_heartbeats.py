"""Heartbeats, stepped on a manual clock: one per period, and the cancellations they bring."""

from __future__ import annotations

import anyio
import pytest

from gladd.executor.heartbeats import Heartbeats
from gladd.executor.ledger import Ledger, StopReason
from gladd.store import NewTask, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.executor.test_executor import policies
from tests.unit.manual_clock import ManualClock

pytestmark = pytest.mark.anyio


def heartbeats_on(store: MemoryStore, ledger: Ledger, clock: ManualClock) -> Heartbeats:
    p = policies()
    return Heartbeats(
        store=store,
        policies=lambda: p,
        worker_id="w1",
        ledger=ledger,
        now=clock.now,
        clock=clock,
        store_health=lambda error: None,
    )


async def test_a_heartbeat_each_period_keeps_held_tasks_and_delivers_cancellations() -> None:
    store, clock, ledger = MemoryStore(), ManualClock(), Ledger()
    await store.open()
    await store.enqueue(NewTask(kind="t.any"), now=clock.now())
    (task,) = await store.claim(worker="w1", limit=1, now=clock.now())
    running = ledger.hold(task)
    beats = heartbeats_on(store, ledger, clock)  # heartbeat 50ms, lease 2s
    async with anyio.create_task_group() as tg:
        await tg.start(beats.run)
        for _ in range(60):  # 3s of heartbeats: past the lease, and still ours
            await clock.advance(0.05)
        report = await store.rescue(now=clock.now(), lease=2.0, max_rescues=3)
        assert report.to_pending == ()
        assert report.to_dead == ()
        await store.cancel(task.id, now=clock.now())
        assert not running.scope.cancel_called  # only the next heartbeat brings it
        await clock.advance(0.05)
        assert running.scope.cancel_called
        assert running.reason is StopReason.CANCEL
        tg.cancel_scope.cancel()
    assert clock.slept == [0.05] * 62
    stored = await store.get(task.id)
    assert stored is not None
    assert stored.state is TaskState.RUNNING  # the attempt ends it


async def test_leaving_deregisters_only_when_every_outcome_is_written() -> None:
    store, clock, ledger = MemoryStore(), ManualClock(), Ledger()
    await store.open()
    await store.enqueue(NewTask(kind="t.any"), now=clock.now())
    (task,) = await store.claim(worker="w1", limit=1, now=clock.now())
    ledger.hold(task)
    beats = heartbeats_on(store, ledger, clock)
    await beats.beat()
    await beats.leave()  # an outcome is owed: the worker stays, so its task is rescued
    report = await store.rescue(now=clock.now(), lease=0.0, max_rescues=3)
    assert report.dead_workers == ("w1",)
