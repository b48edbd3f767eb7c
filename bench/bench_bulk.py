"""A bulk retry of 100,000 dead tasks (``POST /tasks/bulk``, ``gladd tasks retry --all``),
set-based vs one task per transaction, on SQLite and PostgreSQL (target: ≥ 20 × faster).

Run: ``.venv/bin/python bench/bench_bulk.py [--rows 100000] [--one-by-one 5000]``.

The table is filled by plain SQL: ``--rows`` dead tasks of kind ``bulk`` and ``--one-by-one``
of kind ``single``, each with an error. Set-based: :func:`gladd.executor.bulk.run` retries
every ``bulk`` task (find a page, ``retry_many`` it: a statement per chunk of 500). One by
one: the loop bulk actions used before — the same pages, ``Store.retry`` per task, each its
own transaction — over the ``single`` tasks (a sample: at ~1 ms a task, the whole set would
take minutes), reported per task and as the time it would take for ``--rows``. Both then
check every task they were given is pending. PostgreSQL from GLADD_TEST_DATABASE_URL (a
fresh database, dropped afterwards); SQLite in a temp file.

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import Report, gladd_url

from gladd.executor import bulk
from gladd.store import Store, TaskState
from gladd.store.base import TaskFilter
from gladd.store.factory import store_from_url
from gladd.store.listing import decode_cursor

TARGET = 20.0
_ERROR = '[{{"type": "SMTPError", "message": "mailbox full", "attempt": 1, "at": {}}}]'
_SQLITE_FILL = (
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :rows) "
    "INSERT INTO gladd_tasks (kind, state, attempt, max_attempts, errors, created_at, "
    "updated_at, run_at, finished_at) "
    "SELECT :kind, 'dead', 1, 1, :error, :t, :t, :t, :t FROM s"
)
_PG_FILL = (
    "INSERT INTO gladd_tasks (kind, state, attempt, max_attempts, errors, created_at, "
    "updated_at, run_at, finished_at) "
    "SELECT $2, 'dead', 1, 1, $3::jsonb, now(), now(), now(), now() "
    "FROM generate_series(1, $1)"
)
DEAD = frozenset({TaskState.DEAD})


async def fill(url: str, kind: str, rows: int) -> None:
    if url.startswith("sqlite"):
        now_us = int(time.time() * 1_000_000)

        def insert() -> None:
            conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
            try:
                with conn:
                    params = {"rows": rows, "kind": kind, "error": _ERROR.format(now_us), "t": now_us}
                    conn.execute(_SQLITE_FILL, params)
                conn.execute("ANALYZE")
            finally:
                conn.close()

        await anyio.to_thread.run_sync(insert)
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(_PG_FILL, rows, kind, _ERROR.format('"2026-01-01T00:00:00+00:00"'))
        await conn.execute("VACUUM ANALYZE gladd_tasks")
    finally:
        await conn.close()


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
            await fill(url, "bulk", rows)
            await fill(url, "single", sample)
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
            report.add(f"{backend}: speed-up", f"{speedup:.0f} ×", f"≥ {TARGET:.0f} ×")
            report.verdict(speedup >= TARGET)
        finally:
            await store.close()


async def run(args: argparse.Namespace) -> int:
    report = Report()
    started = time.perf_counter()
    for backend in args.backends.split(","):
        await measure(backend, args.rows, args.one_by_one, report)
    return report.finish(started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--one-by-one", type=int, default=5_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    return anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
