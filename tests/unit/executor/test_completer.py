"""The completer: batched outcome writes, and the paced retries of a failed one."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime

import anyio
import pytest

from gladd.errors import StoreError, StoreUnavailable
from gladd.executor.completer import Completer
from gladd.executor.ledger import Ledger
from gladd.executor.runner import utcnow
from gladd.resilience.clock import FakeClock
from gladd.resilience.pacing import STORE_BACKOFF, capped
from gladd.store import NewTask, Outcome, Succeeded, Task, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.executor.test_executor import policies

pytestmark = pytest.mark.anyio


class FlakyFinish(MemoryStore):
    """A memory store whose first ``failures`` outcome writes fail as a lost database's do;
    it keeps the size of each batch it was asked to write."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.batches: list[int] = []
        self.gate: anyio.Event | None = None

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        self.batches.append(len(outcomes))
        if self.gate is not None:
            await self.gate.wait()
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("the database went away")
        return await super().finish(outcomes, now=now)


async def claimed(store: MemoryStore, ledger: Ledger, n: int) -> list[Task]:
    for _ in range(n):
        await store.enqueue(NewTask(kind="t.ok"), now=utcnow())
    tasks = await store.claim(worker="w1", limit=n, now=utcnow())
    for task in tasks:
        ledger.hold(task)
        ledger.ran(task.id)
    return tasks


def completer_on(store: MemoryStore, ledger: Ledger, clock: FakeClock) -> Completer:
    p = policies()
    return Completer(
        store=store,
        policies=lambda: p,
        ledger=ledger,
        now=utcnow,
        clock=clock,
        rng=random.Random(11),
        store_health=lambda error: None,
    )


async def test_a_failed_outcome_write_is_retried_after_a_jittered_backoff() -> None:
    store = FlakyFinish(failures=6)
    await store.open()
    ledger, clock = Ledger(), FakeClock()
    (task,) = await claimed(store, ledger, 1)
    completer = completer_on(store, ledger, clock)
    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        completer.record(Succeeded(id=task.id, token=task.token, result="done"))
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    found = await store.get(task.id)
    assert found is not None
    assert found.state is TaskState.SUCCEEDED
    assert ledger.unwritten == {}
    slept = clock.slept
    assert len(slept) == 6
    # database.retry unset: the default store backoff, capped at a heartbeat.
    heartbeat = policies().executor.heartbeat
    ceilings = [capped(STORE_BACKOFF, heartbeat).ceiling(n) for n in range(1, 7)]
    assert ceilings[-1] == 0.05  # the heartbeat
    assert all(0 <= d <= c for d, c in zip(slept, ceilings, strict=True))
    assert slept != ceilings  # jittered, not the bare schedule
    assert len(set(slept)) == 6  # and not a fixed rhythm
    assert clock.monotonic() == pytest.approx(1000.0 + sum(slept))
    assert completer.succeeded == 1


async def test_outcomes_recorded_during_a_write_share_the_next_round_trip() -> None:
    store = FlakyFinish()
    await store.open()
    ledger = Ledger()
    tasks = await claimed(store, ledger, 5)
    completer = completer_on(store, ledger, FakeClock())
    store.gate = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        for task in tasks:
            completer.record(Succeeded(id=task.id, token=task.token))
            await anyio.wait_all_tasks_blocked()  # the first is being written alone
        store.gate.set()
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert store.batches == [1, 4]
    assert completer.succeeded == 5
    assert ledger.unwritten == {}


async def test_what_the_store_refuses_is_kept_for_the_next_flush() -> None:
    store = FlakyFinish(failures=1)
    await store.open()
    ledger = Ledger()
    tasks = await claimed(store, ledger, 2)
    health: list[StoreError | None] = []
    completer = completer_on(store, ledger, FakeClock())
    completer.store_health = health.append
    for task in tasks:
        completer.record(Succeeded(id=task.id, token=task.token))
    await completer.flush()
    assert sorted(ledger.unwritten) == [t.id for t in tasks]  # still owed
    assert [type(e) for e in health] == [StoreUnavailable]
    await completer.flush_everything()
    assert store.batches == [2, 2]
    assert ledger.unwritten == {}


async def test_leaving_waits_for_the_batch_being_written_before_the_loop_is_cancelled() -> None:
    store = FlakyFinish()
    await store.open()
    ledger = Ledger()
    (task,) = await claimed(store, ledger, 1)
    completer = completer_on(store, ledger, FakeClock())
    store.gate = anyio.Event()
    left = anyio.Event()

    async def leave() -> None:
        await completer.flush_everything()
        left.set()

    async with anyio.create_task_group() as tg:
        await tg.start(completer.run)
        completer.record(Succeeded(id=task.id, token=task.token))
        await anyio.wait_all_tasks_blocked()  # the loop is writing it: the outbox is empty
        tg.start_soon(leave)
        await anyio.wait_all_tasks_blocked()
        assert not left.is_set(), "left while its last outcome was still being written"
        store.gate.set()
        with anyio.fail_after(5):
            await left.wait()
        tg.cancel_scope.cancel()  # as Executor.run does once flush_everything returns
    assert ledger.unwritten == {}
    assert completer.succeeded == 1
