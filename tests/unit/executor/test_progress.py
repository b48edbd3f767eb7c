"""ctx.progress: checked in the handler, written throttled (on a manual clock), fenced, and
the last report of an attempt stored before its outcome."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import anyio
import pytest

from gladd.executor.kinds import TaskContext
from gladd.executor.progress import PROGRESS_INTERVAL, ProgressWriter, checked_fraction
from gladd.store import NewTask, ProgressReport, Task, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.executor.test_executor import running
from tests.unit.manual_clock import ManualClock

pytestmark = pytest.mark.anyio


class CountingStore(MemoryStore):
    """Keeps each batch of progress reports it was asked to store."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[tuple[int, float]]] = []

    async def record_progress(
        self, reports: Sequence[ProgressReport], *, now: datetime
    ) -> list[bool]:
        self.writes.append([(r.id, r.fraction) for r in reports])
        return await super().record_progress(reports, now=now)


async def claimed(store: MemoryStore, clock: ManualClock, n: int = 1) -> list[Task]:
    for _ in range(n):
        await store.enqueue(NewTask(kind="t"), now=clock.now())
    return await store.claim(worker="w1", limit=n, now=clock.now())


@pytest.mark.parametrize("fraction", [0, 0.5, 1, 1.0000000001])
def test_fractions_from_0_to_1_are_taken(fraction: float) -> None:
    assert 0.0 <= checked_fraction(fraction, None) <= 1.0


def test_a_percentage_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"from 0 to 1 .*got 40 \(for 40 percent, pass 0.4\)"):
        checked_fraction(40, None)


@pytest.mark.parametrize("fraction", [-0.5, float("nan"), float("inf"), 1000])
def test_fractions_outside_0_to_1_are_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction must be from 0 to 1"):
        checked_fraction(fraction, None)


@pytest.mark.parametrize("fraction", ["0.5", None, True])
def test_a_fraction_that_is_not_a_number_is_refused(fraction: object) -> None:
    with pytest.raises(TypeError, match="fraction must be a number from 0 to 1"):
        checked_fraction(fraction, None)


def test_a_message_must_be_text() -> None:
    with pytest.raises(TypeError, match="message must be a str or None, got int"):
        checked_fraction(0.5, 3)


async def test_reports_are_written_at_most_once_per_interval_the_latest_winning() -> None:
    store, clock = CountingStore(), ManualClock()
    await store.open()
    a, b = await claimed(store, clock, 2)
    writer = ProgressWriter(store=store, now=clock.now, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        report_a, report_b = writer.reporter(a), writer.reporter(b)
        report_a(0.1, "first")  # after a quiet spell: written at once
        await anyio.wait_all_tasks_blocked()
        assert store.writes == [[(a.id, 0.1)]]
        for i in range(2, 10):
            report_a(i / 10, f"step {i}")
        report_b(0.5, None)
        await clock.advance(PROGRESS_INTERVAL - 0.01)
        assert len(store.writes) == 1  # within the interval: nothing more
        await clock.advance(0.01)
        assert store.writes[1] == [(a.id, 0.9), (b.id, 0.5)]  # one batch, latest of each
        await clock.advance(PROGRESS_INTERVAL * 3)
        assert len(store.writes) == 2  # nothing new: nothing written
        tg.cancel_scope.cancel()
    stored = await store.get(a.id)
    assert stored is not None
    assert stored.progress is not None
    assert (stored.progress.fraction, stored.progress.message) == (0.9, "step 9")
    assert stored.progress.at == clock.now() - timedelta(seconds=PROGRESS_INTERVAL * 3)


async def test_settle_writes_a_tasks_last_report_without_waiting_for_the_interval() -> None:
    store, clock = CountingStore(), ManualClock()
    await store.open()
    (task,) = await claimed(store, clock)
    writer = ProgressWriter(store=store, now=clock.now, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        report = writer.reporter(task)
        report(0.2)
        await anyio.wait_all_tasks_blocked()
        report(1.0, "done")
        await writer.settle([task.id])  # its outcome is next
        assert store.writes == [[(task.id, 0.2)], [(task.id, 1.0)]]
        tg.cancel_scope.cancel()


async def test_a_report_from_a_worker_thread_is_written() -> None:
    store, clock = CountingStore(), ManualClock()
    await store.open()
    (task,) = await claimed(store, clock)
    writer = ProgressWriter(store=store, now=clock.now, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        report = writer.reporter(task)
        await anyio.to_thread.run_sync(report, 0.7, "from a thread")
        with anyio.fail_after(5):
            while not store.writes:
                await anyio.sleep(0.005)
        tg.cancel_scope.cancel()
    assert store.writes == [[(task.id, 0.7)]]


async def test_an_old_attempts_report_is_fenced_out() -> None:
    store, clock = CountingStore(), ManualClock()
    await store.open()
    (task,) = await claimed(store, clock)
    await clock.advance(100)
    await store.rescue(now=clock.now(), lease=30, max_rescues=5)  # w1 presumed dead
    writer = ProgressWriter(store=store, now=clock.now, clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        writer.reporter(task)(0.5)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert (writer.written, writer.fenced) == (0, 1)
    stored = await store.get(task.id)
    assert stored is not None
    assert stored.progress is None


async def test_a_handlers_progress_is_stored_and_its_last_report_kept() -> None:
    async def pages(ctx: TaskContext, payload: object) -> str:
        for page in range(1, 11):
            ctx.progress(page / 10, f"page {page} of 10")
        return "read"

    def plain(ctx: TaskContext, payload: object) -> str:
        ctx.progress(0.5, "half, from a thread")
        return "ok"

    async with running({"t.pages": pages, "t.plain": plain}) as h:
        done = await h.wait_for(await h.enqueue("t.pages"), TaskState.SUCCEEDED)
        threaded = await h.wait_for(await h.enqueue("t.plain"), TaskState.SUCCEEDED)
    assert done.progress is not None
    assert (done.progress.fraction, done.progress.message) == (1.0, "page 10 of 10")
    assert done.progress.attempt == 1
    assert threaded.progress is not None
    assert threaded.progress.message == "half, from a thread"


async def test_a_bad_fraction_fails_the_attempt_with_the_reason() -> None:
    async def percent(ctx: TaskContext, payload: object) -> None:
        ctx.progress(40)

    async with running({"t.percent": percent}) as h:
        dead = await h.wait_for(await h.enqueue("t.percent"), TaskState.DEAD)
    assert dead.errors[-1].type == "ValueError"
    assert "pass 0.4" in dead.errors[-1].message
