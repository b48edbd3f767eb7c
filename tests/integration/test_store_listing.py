"""The listing part of the Store contract (issue 14): counts by state and kind kept exact
through every transition and plain SQL, keyset pages that neither skip nor repeat while
tasks are added, the filters, and the worker rows. Every store, exact times."""

from __future__ import annotations

import sqlite3
from collections import Counter

import anyio
import asyncpg
import pytest

from gladd.store import Cancelled, Failed, Released, Store, Succeeded, TaskError
from gladd.store.base import TaskFilter, TaskState
from gladd.store.listing import decode_cursor
from tests.integration.test_store_contract import (
    BASE,
    CANCELLED,
    DEAD,
    PENDING,
    RUNNING,
    SUCCEEDED,
    add,
    at,
    claim_one,
)

pytestmark = pytest.mark.anyio


async def plain_insert(backend: tuple[str, str], kind: str, state: str = "pending") -> None:
    """What an application may do: insert a row by SQL, behind gladd's back."""
    name, url = backend
    sql = "INSERT INTO gladd_tasks (kind, state) VALUES ({0}, {1})"
    if name == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute(sql.format("?", "?"), (kind, state))
        db.close()
    elif name == "postgresql":
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql.format("$1", "$2"), kind, state)
        finally:
            await conn.close()


async def everything(store: Store, where: TaskFilter, limit: int = 7) -> list[int]:
    """Every matching id, page by page."""
    ids: list[int] = []
    before = None
    while True:
        page = await store.find(where, limit=limit, before=before)
        ids += [t.id for t in page.tasks]
        if page.next is None:
            return ids
        before = decode_cursor(page.next)


async def truth(store: Store) -> dict[str, dict[TaskState, int]]:
    """Counts by kind and state from the tasks themselves."""
    found: dict[str, Counter[TaskState]] = {}
    before = None
    while True:
        page = await store.find(TaskFilter(), limit=1000, before=before)
        for t in page.tasks:
            found.setdefault(t.kind, Counter())[t.state] += 1
        if page.next is None:
            break
        before = decode_cursor(page.next)
    return {k: {s: found[k][s] for s in TaskState} for k in sorted(found)}


def oops(attempt: int = 1) -> TaskError:
    return TaskError(type="SMTPError", message="Mailbox FULL", attempt=attempt, at=at(1))


async def test_stats_stay_exact_through_every_transition(
    store: Store, backend: tuple[str, str]
) -> None:
    assert (await store.stats()).by_kind == {}
    for _ in range(3):
        await add(store, kind="email")
    for _ in range(6):
        await add(store, kind="sms")
    await add(store, kind="report")
    running = [await claim_one(store, "w1", now=1) for _ in range(6)]
    await store.finish(
        [
            Succeeded(id=running[0].id, token=running[0].token, result=1),
            Failed(id=running[1].id, token=running[1].token, error=oops(), retry_at=at(9)),
            Failed(id=running[2].id, token=running[2].token, error=oops(), retry_at=None),
            Released(id=running[3].id, token=running[3].token, run_at=at(5)),
            Cancelled(id=running[4].id, token=running[4].token),
        ],
        now=at(2),
    )
    stats = await store.stats()
    assert stats.by_kind == await truth(store)
    assert sum(stats.totals.values()) == 10
    # running[5] is left running: its worker goes quiet and it is rescued.
    report = await store.rescue(now=at(1000), lease=30, max_rescues=3)
    assert running[5].id in report.to_pending
    await store.retry(running[2].id, now=at(1001))  # dead → pending
    await store.cancel((await add(store, kind="report")).id, now=at(1002))
    claimed = await claim_one(store, "w2", now=at(1003).timestamp() - BASE.timestamp())
    await store.finish([Succeeded(id=claimed.id, token=claimed.token)], now=at(1004))
    assert await store.purge(finished_before=at(2000)) >= 1
    await plain_insert(backend, "sql.made")
    await plain_insert(backend, "sql.made", "dead")

    stats = await store.stats()
    assert stats.by_kind == await truth(store)
    assert stats.totals == await store.counts()
    assert stats.totals[RUNNING] == 0
    if backend[0] != "memory":
        assert stats.by_kind["sql.made"][PENDING] == 1
        assert stats.by_kind["sql.made"][DEAD] == 1
    assert await store.stats() == stats  # a read that folds changes nothing


async def test_a_kind_with_no_tasks_left_leaves_the_stats(store: Store) -> None:
    task = await add(store, kind="once")
    await store.cancel(task.id, now=at(1))
    assert (await store.stats()).by_kind == {"once": dict.fromkeys(TaskState, 0) | {CANCELLED: 1}}
    await store.purge(finished_before=at(2))
    assert (await store.stats()).by_kind == {}


async def test_pages_go_newest_first_and_say_when_there_is_more(store: Store) -> None:
    ids = [(await add(store, kind="k")).id for _ in range(15)]
    first = await store.find(TaskFilter(), limit=10)
    assert [t.id for t in first.tasks] == ids[::-1][:10]
    assert first.next is not None
    second = await store.find(TaskFilter(), limit=10, before=decode_cursor(first.next))
    assert [t.id for t in second.tasks] == ids[::-1][10:]
    assert second.next is None
    exact = await store.find(TaskFilter(), limit=15)
    assert exact.next is None  # a full last page is not followed by an empty one


async def test_paging_while_tasks_are_added_neither_skips_nor_repeats(store: Store) -> None:
    before = [(await add(store, kind="k")).id for _ in range(120)]
    added: list[int] = []
    seen: list[int] = []

    async def keep_adding() -> None:
        for n in range(120):
            added.append((await add(store, kind="k", now=n)).id)
            await anyio.sleep(0)

    async def page_through() -> None:
        cursor = None
        while True:
            page = await store.find(TaskFilter(), limit=7, before=cursor)
            seen.extend(t.id for t in page.tasks)
            await anyio.sleep(0)
            if page.next is None:
                return
            cursor = decode_cursor(page.next)

    async with anyio.create_task_group() as group:
        group.start_soon(keep_adding)
        group.start_soon(page_through)
    assert len(seen) == len(set(seen)), "a task was shown twice"
    assert set(before) <= set(seen), "a task that was there all along was skipped"
    assert seen == sorted(seen, reverse=True)
    assert set(seen) <= set(before) | set(added)


async def test_filters_by_states_kind_error_and_creation_time(store: Store) -> None:
    early = await add(store, now=0, kind="email")
    mid = await add(store, now=60, kind="email")
    late = await add(store, now=120, kind="sms")
    for task in (await claim_one(store, now=130), await claim_one(store, now=130)):
        retry = at(200) if task.id == mid.id else None
        await store.finish(
            [Failed(id=task.id, token=task.token, error=oops(), retry_at=retry)], now=at(131)
        )

    async def ids(**fields: object) -> list[int]:
        where = TaskFilter(**fields)  # type: ignore[arg-type]
        found = await everything(store, where, limit=2)
        assert await store.count_matching(where) == len(found)
        return found

    states = {t.id: t.state for t in [await store.get(i) for i in (early.id, mid.id)] if t}
    dead = [i for i, s in states.items() if s is DEAD]
    assert await ids(states=frozenset({DEAD})) == dead
    assert await ids(states=frozenset({DEAD, PENDING})) == [late.id, mid.id, early.id]
    assert await ids(kind="sms") == [late.id]
    assert await ids(error="mailbox full") == [mid.id, early.id]
    assert await ids(error="smtperror: mail") == [mid.id, early.id]
    assert await ids(error="nothing like it") == []
    assert await ids(since=at(60)) == [late.id, mid.id]
    assert await ids(until=at(60)) == [early.id]
    assert await ids(since=at(30), until=at(90), kind="email") == [mid.id]
    assert await ids(max_id=mid.id) == [mid.id, early.id]
    assert await ids(states=frozenset({SUCCEEDED})) == []


async def test_workers_are_listed_with_their_last_heartbeat_and_tasks(store: Store) -> None:
    await add(store)
    await add(store)
    await claim_one(store, "w1", now=5)
    await store.heartbeat(worker="w2", now=at(7), running=[])
    workers = await store.workers()
    assert [(w.id, w.last_seen, w.running) for w in workers] == [
        ("w1", at(5), 1),
        ("w2", at(7), 0),
    ]
    await store.forget_worker("w2")
    assert [w.id for w in await store.workers()] == ["w1"]


async def test_reads_at_once_all_see_every_task(store: Store) -> None:
    """On PostgreSQL a read folds the deltas: reads side by side must each see them all."""
    for n in range(30):
        task = await add(store, kind=f"k{n % 3}")
        if n % 2:
            await store.cancel(task.id, now=at(1))
    expected = await truth(store)
    seen: list[object] = []

    async def read() -> None:
        seen.append((await store.stats()).by_kind)

    for _ in range(3):
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(read)
    assert seen == [expected] * 24
