"""Group commit: concurrent enqueues share one transaction; a lone one waits for nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import anyio
import pytest

from gladd.errors import StoreUnavailable, TaskRejected
from gladd.executor.group_commit import GroupCommit
from gladd.executor.runner import utcnow
from gladd.store import Enqueued, NewTask, TaskState
from gladd.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


class Counting(MemoryStore):
    """A memory store counting its enqueue transactions; ``gate`` holds each one."""

    def __init__(self) -> None:
        super().__init__()
        self.transactions: list[int] = []  # tasks per transaction
        self.gate: anyio.Event | None = None
        self.refuse: str | None = None  # a kind the store refuses
        self.fail = 0  # transactions to fail as a lost database does

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued:
        return (await self.enqueue_many([task], now=now))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask], *, now: datetime) -> list[Enqueued]:
        self.transactions.append(len(tasks))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise StoreUnavailable("the database went away")
        if any(t.kind == self.refuse for t in tasks):
            raise TaskRejected(f"{self.refuse} refused by the store")
        return await super().enqueue_many(tasks, now=now)


async def opened() -> Counting:
    store = Counting()
    await store.open()
    return store


async def test_a_lone_enqueue_is_one_transaction_of_its_own_at_once() -> None:
    store = await opened()
    group = GroupCommit(store=store)
    enqueued = await group.enqueue(NewTask(kind="k"), now=utcnow())
    assert enqueued.created
    assert store.transactions == [1]


async def test_enqueues_arriving_during_a_write_share_the_next_transaction() -> None:
    store = await opened()
    group = GroupCommit(store=store)
    store.gate = anyio.Event()
    ids: list[int] = []

    async def one(n: int) -> None:
        ids.append((await group.enqueue(NewTask(kind="k", payload={"n": n}), now=utcnow())).id)

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(one, n)
        await anyio.wait_all_tasks_blocked()  # the first is being written; 19 wait
        store.gate.set()
    assert store.transactions == [1, 19]
    assert len(set(ids)) == 20
    assert (await store.counts())[TaskState.PENDING] == 20


async def test_a_task_the_store_refuses_fails_only_its_own_caller() -> None:
    store = await opened()
    group = GroupCommit(store=store)
    store.gate = anyio.Event()
    store.refuse = "bad"
    outcome: dict[str, object] = {}

    async def one(kind: str, name: str) -> None:
        try:
            outcome[name] = (await group.enqueue(NewTask(kind=kind), now=utcnow())).id
        except TaskRejected as exc:
            outcome[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "k", "first")
        await anyio.wait_all_tasks_blocked()
        for name, kind in (("a", "k"), ("bad", "bad"), ("b", "k")):
            tg.start_soon(one, kind, name)
        await anyio.wait_all_tasks_blocked()
        store.gate.set()
    assert isinstance(outcome["bad"], TaskRejected)
    assert all(isinstance(outcome[n], int) for n in ("first", "a", "b"))
    assert (await store.counts())[TaskState.PENDING] == 3


async def test_a_failed_transaction_fails_every_caller_in_it_and_stores_none() -> None:
    store = await opened()
    group = GroupCommit(store=store)
    store.gate = anyio.Event()
    store.fail = 2  # the lone first write, then the group of three
    failures: list[BaseException] = []

    async def one() -> None:
        try:
            await group.enqueue(NewTask(kind="k"), now=utcnow())
        except StoreUnavailable as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        store.gate.set()
    assert len(failures) == 4
    assert sum((await store.counts()).values()) == 0
    assert (await group.enqueue(NewTask(kind="k"), now=utcnow())).created  # and it recovers


async def test_a_caller_cancelled_while_waiting_is_not_stored() -> None:
    store = await opened()
    group = GroupCommit(store=store)
    store.gate = anyio.Event()
    stored: list[int] = []

    async def one(n: int) -> None:
        stored.append((await group.enqueue(NewTask(kind="k", payload={"n": n}), now=utcnow())).id)

    async with anyio.create_task_group() as outer:
        outer.start_soon(one, 0)  # the writer
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as waiters:
            waiters.start_soon(one, 1)
            await anyio.wait_all_tasks_blocked()
            waiters.cancel_scope.cancel()  # n=1 gives up before its write begins
        outer.start_soon(one, 2)
        await anyio.wait_all_tasks_blocked()
        store.gate.set()
    payloads = sorted(t.payload["n"] for t in await store.list(limit=10))
    assert payloads == [0, 2]
    assert len(stored) == 2


async def test_a_writer_cancelled_mid_write_still_commits_the_others() -> None:
    store = await opened()
    group = GroupCommit(store=store)
    store.gate = anyio.Event()
    got: list[Enqueued] = []

    async def follower() -> None:
        got.append(await group.enqueue(NewTask(kind="k", payload={"n": 1}), now=utcnow()))

    async def leader() -> None:
        await group.enqueue(NewTask(kind="k", payload={"n": 0}), now=utcnow())

    async with anyio.create_task_group() as outer, anyio.create_task_group() as writer:
        writer.start_soon(leader)
        await anyio.wait_all_tasks_blocked()  # its write is held at the gate
        outer.start_soon(follower)
        await anyio.wait_all_tasks_blocked()
        writer.cancel_scope.cancel()
        store.gate.set()
    assert [(await store.get(e.id)).payload for e in got] == [{"n": 1}]  # type: ignore[union-attr]
    assert sorted(t.payload["n"] for t in await store.list(limit=10)) == [0, 1]
