"""``GET /tasks/stats`` and filtered first pages of ``GET /tasks`` with 1,000,000 tasks in
the table, on SQLite and PostgreSQL (issue 14: each ≤ 100 ms server side).

Run: ``.venv/bin/python bench/bench_stats.py [--rows 1000000] [--samples 30]``.

The table is filled by plain SQL (which the counts' triggers see, as they see any insert):
ten kinds (runs of 100 ids each), 97 % succeeded, 1 % each dead (with an error), pending
and cancelled, created a second apart. The admin app runs in-process (httpx's ASGI
transport: what is timed is the server's work, no socket); each figure is the median of
``--samples`` requests after one warm-up, with the p90 beside it. PostgreSQL from
GLADD_TEST_DATABASE_URL (a fresh database, dropped afterwards); SQLite in a temp file.

Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import Report, gladd_url, run_fill

from gladd.admin.app import create_app
from gladd.executor.service import TaskService
from gladd.observe.health import HealthBoard
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import parse_policies
from gladd.store.factory import store_from_url

TARGET_MS = 100.0
POLICIES = parse_policies(b"", source="policies.toml").policies
_ERROR = '[{{"type": "SMTPError", "message": "mailbox full", "attempt": 1, "at": {}}}]'
PG_ERROR = _ERROR.format('"2026-01-01T00:00:00+00:00"')
SQLITE_ERROR = _ERROR.format(1_767_225_600_000_000)  # the same time, in microseconds
# state by i % 100: 0 dead, 1 pending, 2 cancelled, the rest succeeded
_SQLITE_FILL = (
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
    "INSERT INTO gladd_tasks (kind, state, errors, created_at, updated_at, run_at, finished_at) "
    "SELECT 'kind' || (i / 100 % 10), "
    "CASE i % 100 WHEN 0 THEN 'dead' WHEN 1 THEN 'pending' WHEN 2 THEN 'cancelled' "
    "ELSE 'succeeded' END, CASE i % 100 WHEN 0 THEN ? ELSE '[]' END, "
    "? + i * 1000000, ? + i * 1000000, ? + i * 1000000, "
    "CASE WHEN i % 100 = 1 THEN NULL ELSE ? + i * 1000000 END FROM s"
)
_PG_FILL = (
    "INSERT INTO gladd_tasks (kind, state, errors, created_at, updated_at, run_at, finished_at) "
    "SELECT 'kind' || (i / 100 % 10), "
    "CASE i % 100 WHEN 0 THEN 'dead' WHEN 1 THEN 'pending' WHEN 2 THEN 'cancelled' "
    "ELSE 'succeeded' END, CASE i % 100 WHEN 0 THEN $2::jsonb ELSE '[]' END, "
    "t, t, t, CASE WHEN i % 100 = 1 THEN NULL ELSE t END "
    "FROM generate_series(1, $1) AS i, "
    "LATERAL (SELECT now() - interval '1 second' * ($1 - i)) AS c(t)"
)
REQUESTS = (
    ("GET /tasks/stats", "/tasks/stats"),
    ("first page: state=dead kind=kind3", "/tasks?state=dead&kind=kind3&limit=50"),
    ("first page: state=dead,cancelled", "/tasks?state=dead,cancelled&limit=100"),
    ("first page: error=mailbox", "/tasks?error=mailbox&limit=50"),
    ("first page: since=1h", "/tasks?since=1h&limit=100"),
)
WORST = ("no task matches: kind=nothing", "/tasks?kind=nothing&limit=50")
"""A filter that matches no task reads the whole table (no index by kind or state: each
would cost every drain an index write per state change); reported, not held to a target."""


async def fill(url: str, rows: int) -> None:
    now_us = int((time.time() - rows) * 1_000_000)

    def on_sqlite(conn: sqlite3.Connection) -> None:
        conn.execute(_SQLITE_FILL, (rows, SQLITE_ERROR, now_us, now_us, now_us, now_us))

    async def on_postgres(conn: asyncpg.Connection) -> None:
        await conn.execute(_PG_FILL, rows, PG_ERROR)

    await run_fill(url, on_sqlite, on_postgres)


async def measure(backend: str, rows: int, samples: int, report: Report) -> None:
    async with gladd_url(backend) as url:
        store = store_from_url(url)
        await store.open()
        try:
            started = time.perf_counter()
            await fill(url, rows)
            report.add(f"{backend}: fill {rows:,} tasks", f"{time.perf_counter() - started:.1f}s")
            service = TaskService(store, known_kinds(POLICIES), lambda: POLICIES)
            app = create_app(HealthBoard(version="bench", service_id="bench"), tasks=service)
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
                for what, path in REQUESTS:
                    times = await _timed(client, path, samples)
                    median, p90 = statistics.median(times), sorted(times)[int(0.9 * len(times))]
                    report.add(
                        f"{backend}: {what}",
                        f"{median:.1f} ms (p90 {p90:.1f})",
                        f"median ≤ {TARGET_MS:.0f} ms",
                    )
                    report.verdict(median <= TARGET_MS)
                what, path = WORST
                times = await _timed(client, path, max(3, samples // 4))
                report.add(f"{backend}: {what} (info)", f"{statistics.median(times):.1f} ms")
        finally:
            await store.close()


async def _timed(client: httpx.AsyncClient, path: str, samples: int) -> list[float]:
    answer = await client.get(path)  # warm-up: plans, caches
    assert answer.status_code == 200, answer.text
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        answer = await client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
    return times


Measure = Callable[[str, int, int, Report], Awaitable[None]]


async def run(measure_one: Measure, args: argparse.Namespace) -> int:
    report = Report()
    started = time.perf_counter()
    for backend in args.backends.split(","):
        await measure_one(backend, args.rows, args.samples, report)
    return report.finish(started)


def command(measure_one: Measure, doc: str, *, samples: int) -> int:
    """A bench's command line: ``--rows``, ``--samples``, ``--backends``; its exit code."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--backends", default="sqlite,postgresql")
    return anyio.run(run, measure_one, parser.parse_args())


def main() -> int:
    return command(measure, __doc__, samples=30)


if __name__ == "__main__":
    sys.exit(main())
