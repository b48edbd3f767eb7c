"""Schedule enqueue lateness and idle cost with 1,000 schedules, on SQLite and PostgreSQL.

Run: ``.venv/bin/python bench/bench_schedules.py [--seconds 60]``. Exits 1 when a target
is missed:

- lateness (enqueue time - tick, jitter 0), p99 ≤ 100 ms on each store, with 1,000
  schedules defined: ``every = "60s"``, ``"61s"``, ... ``"1059s"`` (ticks aligned to each
  period since the epoch, so over a minute about 170 fire, spread as a real fleet's would
  be, with all 1,000 read at each look), for ``--seconds`` of real time, through the real
  :class:`~gladd.maintenance.scheduler.Scheduler` and store;
- an idle enqueuer with 1,000 schedules between ticks (all nightly: ``0 3 * * *``) uses
  < 1 % of a core (process CPU time over 10 s of wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg
from loguru import logger

from gladd.executor.decide import scheduled_task
from gladd.maintenance.scheduler import Scheduler
from gladd.policies import Policies, parse_policies
from gladd.store.base import Store
from gladd.store.postgres.store import PostgresStore
from gladd.store.sqlite.store import SQLiteStore

SERVER = os.environ.get("GLADD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
COUNT = 1000


def fleet(nightly: bool) -> Policies:
    lines = []
    for i in range(COUNT):
        timing = 'cron = "0 3 * * *"' if nightly else f'every = "{60 + i}s"'
        lines.append(f'[schedules.s{i}]\n{timing}\nkind = "gladd.noop"\noverlap = "allow"\n')
    return parse_policies("\n".join(lines).encode(), source="bench").policies


def utcnow() -> datetime:
    return datetime.now(UTC)


async def lateness(store: Store, seconds: float) -> list[float]:
    rules = fleet(nightly=False)
    late: list[float] = []
    scheduler = Scheduler(
        store=store,
        policies=lambda: rules,
        now=utcnow,
        make_task=lambda *tick: scheduled_task(rules, *tick),
        on_lateness=late.append,
    )
    with anyio.move_on_after(seconds):
        await scheduler.run()
    return late


async def idle_cpu(store: Store) -> float:
    rules = fleet(nightly=True)
    scheduler = Scheduler(
        store=store,
        policies=lambda: rules,
        now=utcnow,
        make_task=lambda *tick: scheduled_task(rules, *tick),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(scheduler.run)
        await anyio.sleep(2)  # first sight of every schedule: their rows are written
        cpu, wall = time.process_time(), time.monotonic()
        await anyio.sleep(10)
        used = (time.process_time() - cpu) / (time.monotonic() - wall)
        tg.cancel_scope.cancel()
    return used


async def on_postgres(work: str, seconds: float) -> float | list[float]:
    name = f"gladd_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(SERVER)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = SERVER.rsplit("/", 1)[0] + f"/{name}"
    try:
        store = PostgresStore(url)
        await store.open()
        try:
            return await (lateness(store, seconds) if work == "late" else idle_cpu(store))
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def on_sqlite(work: str, seconds: float) -> float | list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "gladd.db")
        await store.open()
        try:
            return await (lateness(store, seconds) if work == "late" else idle_cpu(store))
        finally:
            await store.close()


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="lateness run per store")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    missed = []
    for label, run in (("sqlite", on_sqlite), ("postgresql", on_postgres)):
        late = asyncio.run(run("late", args.seconds))
        assert isinstance(late, list)
        worst = p99(late)
        ok = bool(late) and worst <= 0.1
        print(
            f"{label:<10} lateness: {len(late)} ticks, p50 {statistics.median(late) * 1e3:.1f} ms,"
            f" p99 {worst * 1e3:.1f} ms, max {max(late) * 1e3:.1f} ms  target p99 ≤ 100 ms"
            f"  {'ok' if ok else 'MISSED'}"
        )
        if not ok:
            missed.append(f"{label} lateness")
        cpu = asyncio.run(run("idle", 0))
        assert isinstance(cpu, float)
        ok = cpu < 0.01
        print(
            f"{label:<10} idle CPU with {COUNT} schedules: {cpu * 100:.2f} % of a core  "
            f"target < 1 %  {'ok' if ok else 'MISSED'}"
        )
        if not ok:
            missed.append(f"{label} idle CPU")
    if missed:
        print("MISSED: " + ", ".join(missed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
