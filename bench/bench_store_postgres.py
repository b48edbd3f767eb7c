"""Raw PostgresStore throughput: enqueue, then claim + finish as fast as the store allows.

Run: ``.venv/bin/python bench/bench_store_postgres.py [--tasks N] [--loops N] [--batch N]``.
The server comes from GLADD_TEST_DATABASE_URL (default: local ``postgres``); the benchmark
creates a database of its own and drops it afterwards.

It enqueues N no-op tasks with one ``enqueue_many``, then runs concurrent loops that each
claim a batch, at once finish it as ``Succeeded`` in one ``finish`` call, and stop when a
claim comes back empty. No handler runs: this is the store's ceiling, the executor's budget.
Exits 1 when claim + finish falls short of the target (5,000 tasks/s, twice pgqueuer's
~2,500/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gladd.store.base import NewTask, Succeeded, TaskState
from gladd.store.postgres.store import PostgresStore

SERVER = os.environ.get("GLADD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET = 5_000.0


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _drain(store: PostgresStore, worker: str, batch: int) -> int:
    done = 0
    while True:
        now = datetime.now(UTC)
        claimed = await store.claim(worker=worker, limit=batch, now=now)
        if not claimed:
            return done
        held = await store.finish(
            [Succeeded(id=t.id, token=t.token) for t in claimed], now=datetime.now(UTC)
        )
        assert all(held), "a fresh claim lost its token"
        done += len(claimed)


async def run(tasks: int, loops: int, batch: int, pool: int, one_worker: bool) -> float:
    name = f"gladd_bench_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(SERVER)._replace(path=f"/{name}"))
    store = PostgresStore(url, pool_min_size=pool, pool_max_size=pool)
    try:
        await store.open()
        started = time.perf_counter()
        await store.enqueue_many(
            [NewTask(kind="noop") for _ in range(tasks)], now=datetime.now(UTC)
        )
        enqueue_s = time.perf_counter() - started
        print(f"enqueue_many  {tasks:>7} tasks in {enqueue_s:6.3f}s  {tasks / enqueue_s:>9,.0f}/s")

        started = time.perf_counter()
        done = await asyncio.gather(
            *(_drain(store, "bench" if one_worker else f"bench-{i}", batch) for i in range(loops))
        )
        drain_s = time.perf_counter() - started
        rate = sum(done) / drain_s
        print(
            f"claim+finish  {sum(done):>7} tasks in {drain_s:6.3f}s  {rate:>9,.0f}/s"
            f"  ({loops} loops, batch {batch}, per loop {done})"
        )
        counts = await store.counts()
        assert counts[TaskState.SUCCEEDED] == tasks, counts
        return rate
    finally:
        await store.close()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument(
        "--one-worker", action="store_true", help="all loops claim as one worker (one node)"
    )
    args = parser.parse_args()
    rate = asyncio.run(run(args.tasks, args.loops, args.batch, args.pool, args.one_worker))
    verdict = "ok" if rate >= TARGET else "MISSED"
    print(f"target ≥ {TARGET:,.0f} tasks/s: {verdict}")
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
