"""The Store contract for progress and watches, on every store.

Progress is stored under the fencing token, as outcomes are; a watch wakes when the task
changes — through this store object, or (SQLite, PostgreSQL) through another one on the
same database, as a waiting client hears the daemon. Wake-ups are waited for with a
generous deadline, far under the waiters' safety re-read, never timed tightly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from gladd.errors import UnknownTask, WaitTimeout
from gladd.executor.waiting import WAIT_RECHECK, wait_finished
from gladd.store import (
    Failed,
    NewTask,
    ProgressReport,
    Store,
    Succeeded,
    Task,
    TaskProgress,
    TaskState,
)
from tests.integration.test_store_contract import at, error, get, make_store

pytestmark = pytest.mark.anyio

PROMPT = WAIT_RECHECK / 2
"""A wake-up must come well before the safety re-read would have found the change."""


@pytest.fixture
async def other(backend: tuple[str, str], store: Store) -> AsyncIterator[Store]:
    """Another store object on the same database (another process's, say): the same one
    for the memory store, which nothing else can reach."""
    if backend[0] == "memory":
        yield store
        return
    second = make_store(backend)
    await second.open()
    try:
        yield second
    finally:
        await second.close()


async def running(store: Store) -> Task:
    await store.enqueue(NewTask(kind="email"), now=at(0))
    [task] = await store.claim(worker="w1", limit=1, now=at(1))
    return task


def report(task: Task, fraction: float, message: str | None = None) -> ProgressReport:
    return ProgressReport(
        id=task.id, token=task.token, fraction=fraction, message=message, attempt=task.attempt
    )


# -- progress -------------------------------------------------------------------------------


async def test_progress_is_stored_with_its_time_and_attempt(store: Store) -> None:
    task = await running(store)
    assert task.progress is None
    assert await store.record_progress([report(task, 0.25, "page 1 of 4")], now=at(2)) == [True]
    stored = await get(store, task.id)
    assert stored.progress == TaskProgress(
        fraction=0.25, message="page 1 of 4", at=at(2), attempt=1
    )
    assert await store.record_progress([report(task, 0.5)], now=at(3)) == [True]
    assert (await get(store, task.id)).progress == TaskProgress(
        fraction=0.5, message=None, at=at(3), attempt=1
    )
    [listed] = await store.list()
    assert listed.progress == TaskProgress(fraction=0.5, message=None, at=at(3), attempt=1)


async def test_progress_of_a_stale_token_or_a_finished_task_changes_nothing(store: Store) -> None:
    task = await running(store)
    await store.record_progress([report(task, 0.3)], now=at(2))
    # Rescued from a dead worker and claimed by another: the old attempt is fenced out.
    await store.rescue(now=at(100), lease=30, max_rescues=5)
    [again] = await store.claim(worker="w2", limit=1, now=at(101))
    assert again.token > task.token
    stale, fresh = report(task, 0.9, "old"), report(again, 0.1, "new")
    assert await store.record_progress([stale, fresh], now=at(102)) == [False, True]
    assert (await get(store, task.id)).progress == TaskProgress(
        fraction=0.1, message="new", at=at(102), attempt=again.attempt
    )
    await store.finish([Succeeded(id=again.id, token=again.token)], now=at(103))
    assert await store.record_progress([report(again, 1.0)], now=at(104)) == [False]
    done = await get(store, task.id)
    assert done.state is TaskState.SUCCEEDED
    assert done.progress is not None
    assert done.progress.fraction == 0.1


async def test_progress_is_kept_through_a_retry_until_the_next_report(store: Store) -> None:
    task = await running(store)
    await store.record_progress([report(task, 0.6, "halfway")], now=at(2))
    await store.finish(
        [Failed(id=task.id, token=task.token, error=error(), retry_at=at(5))], now=at(3)
    )
    pending = await get(store, task.id)
    assert pending.state is TaskState.PENDING
    assert pending.progress == TaskProgress(fraction=0.6, message="halfway", at=at(2), attempt=1)
    [second] = await store.claim(worker="w1", limit=1, now=at(6))
    await store.record_progress([report(second, 0.1)], now=at(7))
    assert (await get(store, task.id)).progress == TaskProgress(
        fraction=0.1, message=None, at=at(7), attempt=2
    )


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), float("inf")])
async def test_a_fraction_outside_0_to_1_is_refused(store: Store, fraction: float) -> None:
    task = await running(store)
    with pytest.raises(ValueError, match=r"progress must be in 0\.\.1"):
        await store.record_progress([report(task, fraction)], now=at(2))
    assert (await get(store, task.id)).progress is None


async def test_a_long_message_is_cut(store: Store) -> None:
    task = await running(store)
    await store.record_progress([report(task, 0.5, "x" * 5000)], now=at(2))
    progress = (await get(store, task.id)).progress
    assert progress is not None
    assert progress.message is not None
    assert len(progress.message) == 1000
    assert progress.message.endswith("…")


# -- watches --------------------------------------------------------------------------------


async def test_a_watch_wakes_when_another_store_finishes_the_task(
    store: Store, other: Store
) -> None:
    task = await running(other)
    async with store.watch(task.id) as watch:
        assert (await get(store, task.id)).state is TaskState.RUNNING
        await other.finish([Succeeded(id=task.id, token=task.token, result=7)], now=at(2))
        with anyio.fail_after(PROMPT):
            while (await get(store, task.id)).state is not TaskState.SUCCEEDED:
                assert await watch.changed(PROMPT)


async def test_a_watch_wakes_on_progress_from_another_store(store: Store, other: Store) -> None:
    task = await running(other)
    async with store.watch(task.id) as watch:
        await other.record_progress([report(task, 0.5)], now=at(2))
        with anyio.fail_after(PROMPT):
            while (await get(store, task.id)).progress is None:
                assert await watch.changed(PROMPT)


async def test_a_watch_times_out_when_nothing_happens(store: Store) -> None:
    task = await running(store)
    async with store.watch(task.id) as watch:
        assert (await get(store, task.id)).state is TaskState.RUNNING
        # A watch may wake once as it settles in (SQLite); then nothing until the timeout.
        await watch.changed(0.3)
        assert not await watch.changed(0.3)


async def test_wait_finished_returns_the_finished_task_with_its_result(
    store: Store, other: Store
) -> None:
    task = await running(other)
    seen: list[Task] = []

    async def finish_later() -> None:
        await other.record_progress([report(task, 0.5, "half")], now=at(2))
        await anyio.sleep(0.3)
        await other.finish([Succeeded(id=task.id, token=task.token, result={"n": 1})], now=at(3))

    with anyio.fail_after(PROMPT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(finish_later)
            done = await wait_finished(store, task.id, timeout=None, on_change=seen.append)
    assert (done.state, done.result) == (TaskState.SUCCEEDED, {"n": 1})
    assert seen
    assert seen[0].state is TaskState.RUNNING


async def test_wait_finished_times_out_with_the_task_as_last_read(store: Store) -> None:
    task = await running(store)
    await store.record_progress([report(task, 0.4)], now=at(2))
    with pytest.raises(WaitTimeout, match=f"task {task.id} .*still running, 40% done") as caught:
        await wait_finished(store, task.id, timeout=0.2)
    assert caught.value.task.state is TaskState.RUNNING
    assert caught.value.timeout == 0.2


async def test_wait_finished_on_an_unknown_task(store: Store) -> None:
    with pytest.raises(UnknownTask, match="no task with id 999"):
        await wait_finished(store, 999, timeout=1)


async def test_wait_finished_returns_at_once_for_a_finished_task(store: Store) -> None:
    task = await running(store)
    await store.finish(
        [Failed(id=task.id, token=task.token, error=error(), retry_at=None)], now=at(2)
    )
    done = await wait_finished(store, task.id, timeout=0)
    assert done.state is TaskState.DEAD
    assert done.errors[-1].message == "boom"
