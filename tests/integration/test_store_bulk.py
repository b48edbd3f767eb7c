"""The Store contract for ``retry_many`` and ``cancel_many`` (bulk actions, issue 14), on
every store: each rule of the single ``retry`` / ``cancel`` holds for a set of ids changed
a chunk per statement — states, fresh attempts, unique keys (within a chunk and across
chunks), timeline entries saying who, the counts the triggers keep, the executor woken.
"""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest

from gladd.store import Failed, NewTask, Released, Store, Succeeded, Task, TaskState, TimelineEntry
from gladd.store.base import BULK_CHUNK, BulkChange, TaskFilter
from gladd.store.timeline import HEAD, TAIL
from tests.integration.test_store_contract import add, at, claim_one, error, get

pytestmark = pytest.mark.anyio

PENDING, RUNNING = TaskState.PENDING, TaskState.RUNNING
SUCCEEDED, DEAD, CANCELLED = TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED


async def _dead(store: Store, count: int = 1, **fields: Any) -> list[Task]:
    """``count`` tasks that failed their only attempt at 1 s, oldest first."""
    fields.setdefault("kind", "email")
    new = [NewTask(max_attempts=1, **fields) for _ in range(count)]
    await store.enqueue_many(new, now=at(0))
    claimed = sorted(
        await store.claim(worker="w1", limit=count, now=at(0)), key=lambda task: task.id
    )
    failed = [Failed(id=t.id, token=t.token, error=error(), retry_at=None) for t in claimed]
    assert await store.finish(failed, now=at(1)) == [True] * count
    return [await get(store, t.id) for t in claimed]


async def _dead_with_key(store: Store, key: str) -> Task:
    await add(store, unique_key=key, max_attempts=1)
    task = await claim_one(store)
    failed = Failed(id=task.id, token=task.token, error=error(), retry_at=None)
    assert await store.finish([failed], now=at(1)) == [True]
    return await get(store, task.id)


def _entry(entry: TimelineEntry) -> tuple[Any, str, dict[str, Any]]:
    return entry.at, entry.event, dict(entry.fields)


def _last(task: Task) -> tuple[Any, str, dict[str, Any]]:
    return _entry(task.timeline[-1])


# -- retry_many ------------------------------------------------------------------------------


async def test_retry_many_gives_dead_and_cancelled_tasks_a_fresh_allowance(store: Store) -> None:
    dead = (await _dead(store))[0]
    cancelled = await add(store)
    await store.cancel(cancelled.id, now=at(2))
    done = await store.retry_many([cancelled.id, dead.id], now=at(10), by="10.0.0.7")
    assert done == BulkChange(changed=(cancelled.id, dead.id), skipped=())
    for task_id in (dead.id, cancelled.id):
        task = await get(store, task_id)
        assert (task.state, task.attempt, task.rescues, task.run_at) == (PENDING, 0, 0, at(10))
        assert (task.finished_at, task.owner, task.cancel_requested) == (None, None, False)
        assert task.updated_at == at(10)
        assert _last(task) == (at(10), "retried", {"by": "10.0.0.7"})
    assert (await get(store, dead.id)).errors == (error(),)  # the history stays
    again = await claim_one(store, now=10)
    assert (again.id, again.attempt, again.token) == (dead.id, 1, dead.token + 1)


async def test_retry_many_skips_what_is_not_dead_or_cancelled_and_leaves_it(
    store: Store,
) -> None:
    dead = (await _dead(store))[0]
    running = await add(store)
    running = await claim_one(store, now=2)
    succeeded = await add(store, now=2)
    won = await claim_one(store, now=3)
    assert won.id == succeeded.id
    await store.finish([Succeeded(id=won.id, token=won.token)], now=at(4))
    pending = await add(store, now=4)
    others = [await get(store, t.id) for t in (running, pending, succeeded)]
    asked = [999_999, running.id, dead.id, pending.id, dead.id, succeeded.id]
    done = await store.retry_many(asked, now=at(10))
    assert done == BulkChange(
        changed=(dead.id,), skipped=(999_999, running.id, pending.id, succeeded.id)
    )
    assert [await get(store, t.id) for t in others] == others
    # Retried once, though asked twice.
    assert [e.event for e in (await get(store, dead.id)).timeline].count("retried") == 1
    assert await store.retry_many([], now=at(11)) == BulkChange(changed=(), skipped=())


async def test_retry_many_skips_a_task_whose_key_another_unfinished_task_holds(
    store: Store,
) -> None:
    old = await _dead_with_key(store, "u")
    free = await _dead_with_key(store, "v")
    holder = await add(store, unique_key="u", now=2)
    done = await store.retry_many([old.id, free.id], now=at(3))
    assert done == BulkChange(changed=(free.id,), skipped=(old.id,))
    assert (await get(store, old.id)) == old
    assert (await get(store, holder.id)).state is PENDING


async def test_of_tasks_sharing_a_key_in_one_call_only_the_first_is_retried(
    store: Store,
) -> None:
    first = await _dead_with_key(store, "u")
    second = await _dead_with_key(store, "u")
    third = await _dead_with_key(store, "u")
    done = await store.retry_many([second.id, first.id, third.id], now=at(5))
    assert done == BulkChange(changed=(second.id,), skipped=(first.id, third.id))
    states = [(await get(store, t.id)).state for t in (first, second, third)]
    assert states == [DEAD, PENDING, DEAD]


async def test_retry_many_works_chunk_by_chunk_and_a_key_won_in_one_holds_in_the_next(
    store: Store,
) -> None:
    many = await _dead(store, BULK_CHUNK + 2)
    keyed_a = await _dead_with_key(store, "k")
    keyed_b = await _dead_with_key(store, "k")
    # keyed_a comes first (in the first chunk), keyed_b last (in the second).
    ids = [keyed_a.id, *(t.id for t in many), keyed_b.id]
    done = await store.retry_many(ids, now=at(10), by="cli")
    assert done == BulkChange(changed=tuple(ids[:-1]), skipped=(keyed_b.id,))
    assert (await store.counts())[PENDING] == BULK_CHUNK + 3
    assert (await store.counts())[DEAD] == 1
    last = await get(store, many[-1].id)
    assert (last.state, _last(last)) == (PENDING, (at(10), "retried", {"by": "cli"}))


async def test_retry_many_wakes_the_executor(store: Store) -> None:
    dead = await _dead(store, 3)
    await store.wait_for_work(0)  # the enqueue's wake-up, taken
    await store.retry_many([t.id for t in dead], now=at(10))
    with anyio.fail_after(5):
        assert await store.wait_for_work(10) is True
    claimed = await store.claim(worker="w2", limit=10, now=at(10))
    assert sorted(t.id for t in claimed) == [t.id for t in dead]


# -- cancel_many -----------------------------------------------------------------------------


async def test_cancel_many_cancels_pending_and_asks_running_to_stop(store: Store) -> None:
    running = await add(store)
    running = await claim_one(store)
    pending = await add(store, now=1)
    done = await store.cancel_many([pending.id, running.id], now=at(5), by="127.0.0.1")
    assert done == BulkChange(changed=(pending.id, running.id), skipped=())
    cancelled = await get(store, pending.id)
    assert (cancelled.state, cancelled.finished_at, cancelled.updated_at) == (
        CANCELLED,
        at(5),
        at(5),
    )
    assert _last(cancelled) == (at(5), "cancelled", {"by": "127.0.0.1"})
    asked = await get(store, running.id)
    assert (asked.state, asked.cancel_requested, asked.updated_at, asked.finished_at) == (
        RUNNING,
        True,
        at(5),
        None,
    )
    assert _last(asked) == (at(5), "cancel requested", {"by": "127.0.0.1"})
    beat = await store.heartbeat(worker="w1", now=at(6), running=[(running.id, running.token)])
    assert beat == {running.id}
    assert await store.claim(worker="w1", limit=5, now=at(7)) == []


async def test_cancel_many_skips_finished_unknown_and_already_asked(store: Store) -> None:
    running = await add(store)
    running = await claim_one(store)
    await store.cancel(running.id, now=at(2))
    dead = (await _dead(store))[0]
    before = [await get(store, t.id) for t in (running, dead)]
    done = await store.cancel_many([dead.id, 999_999, running.id], now=at(5), by="cli")
    assert done == BulkChange(changed=(), skipped=(dead.id, 999_999, running.id))
    assert [await get(store, t.id) for t in (running, dead)] == before


async def test_cancel_many_works_chunk_by_chunk(store: Store) -> None:
    new = [NewTask(kind="email") for _ in range(BULK_CHUNK + 5)]
    ids = [e.id for e in await store.enqueue_many(new, now=at(0))]
    done = await store.cancel_many(ids, now=at(3))
    assert done == BulkChange(changed=tuple(ids), skipped=())
    assert (await store.counts())[CANCELLED] == BULK_CHUNK + 5
    assert (await store.counts())[PENDING] == 0


# -- the counts ------------------------------------------------------------------------------


async def test_the_counts_follow_bulk_changes(store: Store) -> None:
    dead = await _dead(store, 4)
    pending = [await add(store, kind="sms", now=2) for _ in range(3)]
    await store.retry_many([t.id for t in dead[:3]], now=at(5))
    await store.cancel_many([t.id for t in pending[:2]], now=at(6))
    stats = await store.stats()
    zero = dict.fromkeys(TaskState, 0)
    assert stats.by_kind == {
        "email": zero | {PENDING: 3, DEAD: 1},
        "sms": zero | {PENDING: 1, CANCELLED: 2},
    }
    assert stats.totals == zero | {PENDING: 4, DEAD: 1, CANCELLED: 2}


# -- find_ids --------------------------------------------------------------------------------


async def test_find_ids_pages_the_ids_find_lists(store: Store) -> None:
    dead = await _dead(store, 5)
    await add(store, now=2)  # pending: not matched
    where = TaskFilter(states=frozenset({DEAD}), kind="email")
    newest = [t.id for t in reversed(dead)]
    assert await store.find_ids(where, limit=3) == newest[:3]
    assert await store.find_ids(where, limit=3, before=newest[2]) == newest[3:]
    page = await store.find(where, limit=10)
    assert [t.id for t in page.tasks] == await store.find_ids(where, limit=10) == newest
    upto = TaskFilter(states=frozenset({DEAD}), max_id=newest[1])
    assert await store.find_ids(upto, limit=10) == newest[1:]


async def test_bulk_entries_keep_a_long_timeline_bounded(store: Store) -> None:
    await store.enqueue(NewTask(kind="k"), now=at(0))
    rounds = 15  # each claim and release appends four entries: 61 in all, 51 kept
    for n in range(rounds):
        (task,) = await store.claim(worker="node-a", limit=1, now=at(n + 1))
        held = Released(id=task.id, token=task.token, run_at=at(n + 1), reason="stop")
        await store.finish([held], now=at(n + 1))
    await store.cancel_many([task.id], now=at(100), by="cli")
    await store.retry_many([task.id], now=at(101), by="cli")
    got = await get(store, task.id)
    assert len(got.timeline) == HEAD + 1 + TAIL
    marker = got.timeline[HEAD]
    assert (marker.event, dict(marker.fields)) == ("dropped", {"count": 1 + 4 * rounds + 2 - 50})
    assert [_last(got), _entry(got.timeline[-2])] == [
        (at(101), "retried", {"by": "cli"}),
        (at(100), "cancelled", {"by": "cli"}),
    ]


async def test_a_key_taken_by_a_transaction_in_flight_is_skipped_once_it_commits(
    store: Store, backend: tuple[str, str]
) -> None:
    """PostgreSQL only: another connection's uncommitted enqueue holds the key when the
    retry looks, so the unique index makes the retry wait, then refuse; run again, it sees
    the key held and skips the task."""
    if backend[0] != "postgresql":
        pytest.skip("only PostgreSQL has writers in flight beside a statement")
    old = await _dead_with_key(store, "u")
    free = (await _dead(store))[0]
    other = await asyncpg.connect(backend[1])
    try:
        writing = other.transaction()
        await writing.start()
        await other.execute(
            "INSERT INTO gladd_tasks (kind, unique_key, run_at) VALUES ('email', 'u', now())"
        )
        done: list[BulkChange] = []

        async def retry() -> None:
            done.append(await store.retry_many([old.id, free.id], now=at(5)))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(retry)
                while not await other.fetchval(WAITING_ON_A_LOCK):
                    await anyio.sleep(0.01)
                await writing.commit()
    finally:
        await other.close()
    assert done == [BulkChange(changed=(free.id,), skipped=(old.id,))]
    assert (await get(store, old.id)).state is DEAD


WAITING_ON_A_LOCK = (
    "SELECT count(*) > 0 FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)
