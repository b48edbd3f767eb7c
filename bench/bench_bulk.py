"""A bulk retry of 100,000 dead tasks (``POST /tasks/bulk``, ``gladd tasks retry --all``),
set-based vs one task per transaction, on SQLite and PostgreSQL (target: ≥ 20x faster).

Run: ``.venv/bin/python bench/bench_bulk.py [--rows 100000] [--one-by-one 5000]``.

The store is filled through its own API: ``--rows`` dead tasks of kind ``bulk`` and
``--one-by-one`` of kind ``single``, each with its error and timeline. Set-based:
:func:`gladd.executor.bulk.run` retries every ``bulk`` task (a page of ids, ``retry_many``
on it: a statement per chunk of 500). One by one: the loop bulk actions ran before — pages
of tasks, ``Store.retry`` per task, each its own transaction — over the ``single`` tasks (a
sample: at ~1 ms a task the whole set takes minutes), reported per task and as the time it
would take for ``--rows``. Each checks that every task it was given is pending after.
PostgreSQL from GLADD_TEST_DATABASE_URL (a fresh database, dropped afterwards); SQLite in a
temp file.

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import Report, gladd_url

from gladd.executor import bulk
from gladd.store import Failed, NewTask, Store, TaskError, TaskState
from gladd.store.base import TaskFilter
from gladd.store.factory import store_from_url
from gladd.store.listing import decode_cursor

TARGET = 20.0
DEAD = frozenset({TaskState.DEAD})
BATCH = 1_000


async def fill(store: Store, kind: str, rows: int) -> None:
    """``rows`` tasks of ``kind`` that failed their only attempt, through the store (each
    with its error and a timeline of four entries, as a real dead task has)."""
    now = datetime.now(UTC)
    for start in range(0, rows, BATCH):
        count = min(BATCH, rows - start)
        await store.enqueue_many([NewTask(kind=kind, max_attempts=1)] * count, now=now)
        claimed = await store.claim(worker="bench", limit=count, now=now)
        error = TaskError(type="SMTPError", message="mailbox full", attempt=1, at=now)
        failed = [Failed(id=t.id, token=t.token, error=error, retry_at=None) for t in claimed]
        await store.finish(failed, now=now)


async def one_by_one(store: Store, where: TaskFilter, now: datetime) -> int:
    """The loop bulk actions ran before ``retry_many``: a transaction per task."""
    retried = 0
    before: int | None = None
    while True:
        page = await store.find(where, limit=bulk.CHUNK, before=before)
        for task in page.tasks:
            done = await store.retry(task.id, now=now, by="bench")
            retried += done is not None and done.state is TaskState.PENDING
        if page.next is None:
            return retried
        before = decode_cursor(page.next)


async def measure(backend: str, rows: int, sample: int, report: Report) -> None:
    async with gladd_url(backend) as url:
        store = store_from_url(url)
        await store.open()
        try:
            started = time.perf_counter()
            await fill(store, "bulk", rows)
            await fill(store, "single", sample)
            report.add(f"{backend}: fill", f"{time.perf_counter() - started:.1f}s")
            now = datetime.now(UTC)

            started = time.perf_counter()
            single = await one_by_one(store, TaskFilter(states=DEAD, kind="single"), now)
            per_task = (time.perf_counter() - started) / sample
            assert single == sample, f"one by one retried {single} of {sample}"
            report.add(
                f"{backend}: one by one ({sample:,} tasks)",
                f"{per_task * 1000:.3f} ms/task → {per_task * rows:.1f}s for {rows:,}",
            )

            where = TaskFilter(states=DEAD, kind="bulk")
            started = time.perf_counter()
            done = await bulk.run(store, bulk.BulkAction.RETRY, where, expect=rows, now=now)
            took = time.perf_counter() - started
            assert (len(done.changed), done.skipped) == (rows, 0), done.skipped
            assert await store.count_matching(where) == 0
            counts = await store.counts()
            assert counts[TaskState.PENDING] == rows + sample, counts
            speedup = per_task * rows / took
            report.add(
                f"{backend}: set-based ({rows:,} tasks)",
                f"{took:.2f}s ({took / rows * 1e6:.1f} µs/task)",
            )
            report.add(f"{backend}: speed-up", f"{speedup:.0f}x", f"≥ {TARGET:.0f}x")
            report.verdict(speedup >= TARGET)
        finally:
            await store.close()


async def measure_all(backends: list[str], rows: int, sample: int) -> int:
    report, started = Report(), time.perf_counter()
    for backend in backends:
        await measure(backend, rows, sample, report)
    return report.finish(started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="tasks retried set-based")
    parser.add_argument("--one-by-one", type=int, default=5_000, help="tasks retried singly")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    return anyio.run(measure_all, args.backends.split(","), args.rows, args.one_by_one)


if __name__ == "__main__":
    sys.exit(main())
