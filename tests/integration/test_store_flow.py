"""The Store's flow-control contract (gates and pauses): the same assertions against every
store, with exact times, as ``test_store_contract.py`` holds them to the rest.

What a user would notice: a gate's concurrency and rate hold whatever already runs, held
tasks stay untouched, a dead node's tasks give their slots back, pauses are shared and
expire. Races between nodes are in ``test_store_flow_nodes.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from gladd.store import GatedClaim, NewTask, Store, Succeeded, Task, TaskState
from gladd.store.gates import NO_PARTITION, Gate, GateUsage, LimitUsage, Pause
from tests.integration.test_store_contract import BASE, at, get

pytestmark = pytest.mark.anyio

PENDING, RUNNING = TaskState.PENDING, TaskState.RUNNING
SYNC = Gate(name="kind:sync", kinds=("sync",), concurrency=3)


async def add(
    store: Store, n: int = 1, kind: str = "sync", now: float = 0, **fields: Any
) -> list[Task]:
    tasks = [NewTask(kind=kind, **fields) for _ in range(n)]
    enqueued = await store.enqueue_many(tasks, now=at(now))
    return [task for e in enqueued if (task := await store.get(e.id)) is not None]


async def gated(
    store: Store,
    gates: Sequence[Gate],
    *,
    now: float = 0,
    limit: int = 10,
    kinds: Sequence[str] | None = None,
    worker: str = "w1",
    ended: Sequence[int] = (),
) -> GatedClaim:
    kinds = kinds if kinds is not None else sorted({k for g in gates for k in g.kinds})
    return await store.claim_gated(
        worker=worker, limit=limit, now=at(now), kinds=kinds, gates=gates, ended=ended
    )


def ids(claim: GatedClaim) -> list[int]:
    return [t.id for t in claim.tasks]


def pause(target: str, until: float | None = None, reason: str = "maintenance") -> Pause:
    return Pause(
        target=target,
        reason=reason,
        until=None if until is None else at(until),
        by="cli:ops@host",
        created_at=at(0),
    )


# -- concurrency ----------------------------------------------------------------------------


async def test_a_gate_counts_tasks_already_running(store: Store) -> None:
    tasks = await add(store, 5, timeout=30.0)
    await store.claim(worker="w0", limit=2, now=at(0), kinds=["sync"])  # started ungated
    claim = await gated(store, [SYNC], now=1)
    assert ids(claim) == [tasks[2].id]
    assert claim.usage == {"kind:sync": GateUsage(running=3, busiest=3, tokens=None, held=2)}
    assert (claim.held, claim.next_at) == (2, None)
    [started] = claim.tasks
    # Started exactly as `claim` starts a task.
    assert (started.state, started.owner, started.attempt, started.token) == (RUNNING, "w1", 1, 1)
    assert (started.deadline, started.updated_at) == (at(31), at(1))
    assert await get(store, started.id) == started
    assert ids(await gated(store, [SYNC], now=2)) == []


async def test_held_tasks_stay_pending_untouched(store: Store) -> None:
    tasks = await add(store, 4)
    first = await gated(store, [SYNC], now=1)
    assert len(first.tasks) == 3
    held = await get(store, tasks[3].id)
    assert held == tasks[3]  # pending, attempt 0, token 0, updated_at as enqueued
    assert (held.state, held.attempt, held.token, held.owner) == (PENDING, 0, 0, None)


async def test_a_gate_lowered_below_its_running_tasks_starts_nothing_until_under_it(
    store: Store,
) -> None:
    tasks = await add(store, 6)
    claim = await gated(store, [SYNC])
    assert len(claim.tasks) == 3
    lowered = Gate(name="kind:sync", kinds=("sync",), concurrency=1)
    assert ids(await gated(store, [lowered], now=1)) == []
    done = [Succeeded(id=t.id, token=t.token) for t in claim.tasks]
    await store.finish(done[:2], now=at(2))
    again = await gated(store, [lowered], now=2)
    assert (ids(again), again.usage["kind:sync"].running) == ([], 1)
    await store.finish(done[2:], now=at(3))
    assert ids(await gated(store, [lowered], now=3)) == [tasks[3].id]


async def test_a_limit_shared_by_kinds_counts_them_all(store: Store) -> None:
    shared = Gate(name="limit:crm", kinds=("push", "sync"), concurrency=2)
    [push1, push2] = await add(store, 2, kind="push")
    [sync1, sync2] = await add(store, 2, kind="sync")
    await store.claim(worker="w0", limit=1, now=at(0), kinds=["push"])
    # Only sync is asked for (push paused, say): push2 stays, but the running push counts.
    claim = await gated(store, [shared], kinds=["sync"], now=1)
    assert ids(claim) == [sync1.id]
    assert claim.usage["limit:crm"].running == 2
    assert (await get(store, push2.id)).state is PENDING
    assert (await get(store, sync2.id)).state is PENDING
    assert push1.id < push2.id  # the running one is the first


async def test_a_kind_asked_for_that_no_gate_covers_is_taken(store: Store) -> None:
    closed = Gate(name="kind:sync", kinds=("sync",), concurrency=0)
    await add(store, 2, kind="sync")
    free = await add(store, 2, kind="free")
    claim = await gated(store, [closed], kinds=["free", "sync"])
    assert ids(claim) == [t.id for t in free]
    assert claim.held == 0  # a kind whose limit is full is not even read
    assert claim.usage["kind:sync"].running == 0


async def test_a_workers_ended_attempts_free_their_slots_before_their_outcomes_are_stored(
    store: Store,
) -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=1)
    first, second, third = await add(store, 3)
    assert ids(await gated(store, [gate])) == [first.id]
    # Its handler is done on w1, its outcome not written yet: w1's claim may use the slot.
    assert ids(await gated(store, [gate], worker="w2", ended=[first.id])) == []
    assert ids(await gated(store, [gate], ended=[first.id])) == [second.id]
    assert ids(await gated(store, [gate], ended=[first.id])) == []  # second still runs
    left = await store.get(third.id)
    assert left is not None
    assert (left.state, left.attempt) == (TaskState.PENDING, 0)


async def test_partitions_by_a_payload_field(store: Store) -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=1, partition="tenant")
    a1, a2 = await add(store, 2, payload={"tenant": "a"})
    [b1] = await add(store, payload={"tenant": "b"})
    [n7] = await add(store, payload={"tenant": 7})
    [s7] = await add(store, payload={"tenant": "7"})  # the same partition as 7
    [missing] = await add(store, payload={"other": 1})
    [null] = await add(store, payload={"tenant": None})  # with the missing ones
    [listed] = await add(store, payload=[1, 2])  # not an object: with the missing ones
    claim = await gated(store, [gate])
    assert ids(claim) == [a1.id, b1.id, n7.id, missing.id]
    assert claim.held == 4
    assert claim.usage == {"kind:sync": GateUsage(running=4, busiest=1, tokens=None, held=4)}
    usage = await store.limit_usage([gate], now=at(1))
    assert usage == LimitUsage(
        running={
            ("kind:sync", "a"): 1,
            ("kind:sync", "b"): 1,
            ("kind:sync", "7"): 1,
            ("kind:sync", NO_PARTITION): 1,
        },
        tokens={},
    )
    assert {a2.id, s7.id, null.id, listed.id}.isdisjoint(ids(claim))


async def test_a_rescued_dead_workers_tasks_free_their_slots(store: Store) -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=2)
    tasks = await add(store, 3)
    lost = await gated(store, [gate], worker="dead")
    assert len(lost.tasks) == 2
    assert ids(await gated(store, [gate], worker="w2", now=100)) == []
    report = await store.rescue(now=at(100), lease=30, max_rescues=3)
    assert report.dead_workers == ("dead",)
    assert sorted(report.to_pending) == ids(lost)
    claim = await gated(store, [gate], worker="w2", now=101)
    # Both slots free again: the third task (due since 0), then a rescued one (due at 100).
    assert ids(claim) == [tasks[2].id, lost.tasks[0].id]
    assert claim.usage["kind:sync"].running == 2


# -- rate -----------------------------------------------------------------------------------


async def test_a_rate_gives_its_burst_then_one_start_per_interval(store: Store) -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=2.0, burst=3)
    tasks = await add(store, 10)
    first = await gated(store, [gate], now=10)
    assert ids(first) == [t.id for t in tasks[:3]]
    assert (first.held, first.next_at) == (7, at(10.5))
    assert first.usage["kind:sync"] == GateUsage(running=3, busiest=3, tokens=0.0, held=7)
    early = await gated(store, [gate], now=10.4)
    assert (ids(early), early.next_at) == ([], at(10.5))
    assert ids(await gated(store, [gate], now=10.5)) == [tasks[3].id]
    assert ids(await gated(store, [gate], now=11)) == [tasks[4].id]
    later = await gated(store, [gate], now=12.25)
    assert ids(later) == [t.id for t in tasks[5:7]]  # 2.5 tokens: two starts, 0.5 left
    assert later.next_at == at(12.5)
    usage = await store.limit_usage([gate], now=at(12.5))
    assert usage.tokens == {("kind:sync", NO_PARTITION): 1.0}
    assert usage.running == {("kind:sync", NO_PARTITION): 7}


async def test_a_rate_per_partition(store: Store) -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=1.0, burst=1, partition="tenant")
    a = await add(store, 2, payload={"tenant": "a"})
    b = await add(store, 2, payload={"tenant": "b"})
    claim = await gated(store, [gate])
    assert ids(claim) == [a[0].id, b[0].id]
    assert claim.next_at == at(1)
    assert ids(await gated(store, [gate], now=1)) == [a[1].id, b[1].id]


# -- pauses ---------------------------------------------------------------------------------


async def test_pauses_are_stored_listed_replaced_and_resumed(store: Store) -> None:
    epoch = store.pause_epoch
    stored = await store.pause(pause("kind:sync"))
    assert stored == pause("kind:sync")
    assert store.pause_epoch != epoch
    await store.pause(pause("cooldown:crm", until=60))
    await store.pause(pause("kind:alpha", until=30))
    assert [p.target for p in await store.pauses(now=at(0))] == [
        "cooldown:crm",
        "kind:alpha",
        "kind:sync",
    ]
    assert [p.target for p in await store.pauses(now=at(30))] == ["cooldown:crm", "kind:sync"]
    replaced = await store.pause(pause("kind:sync", until=90, reason="deploy"))
    [listed] = [p for p in await store.pauses(now=at(1)) if p.target == "kind:sync"]
    assert listed == replaced == pause("kind:sync", until=90, reason="deploy")
    for moment in (listed.until, listed.created_at):
        assert moment is not None
        assert moment.utcoffset() == timedelta(0)
    epoch = store.pause_epoch
    assert await store.resume("kind:sync", now=at(2)) == replaced
    assert store.pause_epoch != epoch
    assert await store.resume("kind:sync", now=at(2)) is None  # gone already
    assert await store.resume("kind:alpha", now=at(30)) is None  # expired: removed, not active
    assert [p.target for p in await store.pauses(now=at(0))] == ["cooldown:crm"]


async def test_pause_times_must_be_timezone_aware(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.pause(
            Pause(target="kind:a", reason="r", until=datetime(2026, 1, 1), by="x", created_at=BASE)
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.pauses(now=datetime(2026, 1, 1))


async def test_sweep_deletes_expired_pauses_and_idle_buckets(store: Store) -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=1.0, burst=5)
    other = Gate(name="kind:mail", kinds=("mail",), rate=1.0, burst=5)
    await add(store, 1)
    await add(store, 1, kind="mail")
    await gated(store, [gate], now=0)
    await gated(store, [other], now=50)
    await store.pause(pause("kind:a", until=10))
    await store.pause(pause("kind:b", until=100))
    await store.pause(pause("kind:c"))
    assert await store.sweep_limits(now=at(100), idle=60) == 3  # kind:a, kind:b, sync's bucket
    assert [p.target for p in await store.pauses(now=at(0))] == ["kind:c"]
    usage = await store.limit_usage([gate, other], now=at(100))
    assert usage.tokens == {("kind:mail", NO_PARTITION): 5.0}
    assert await store.sweep_limits(now=at(100), idle=60) == 0


async def test_ring_wakes_a_waiter(store: Store) -> None:
    woke: list[bool] = []

    async def wait() -> None:
        woke.append(await store.wait_for_work(5))

    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            await store.ring()
    assert woke == [True]


async def test_usage_of_gates_never_used_is_empty(store: Store) -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=2, rate=3.0, burst=2)
    assert await store.limit_usage([gate], now=at(0)) == LimitUsage(running={}, tokens={})
    assert await store.limit_usage([], now=at(0)) == LimitUsage(running={}, tokens={})
