"""Every console page rendered with 1,000,000 tasks in the table, on SQLite and PostgreSQL
(issue 14: each page ≤ 100 ms server side).

Run: ``.venv/bin/python bench/bench_console.py [--rows 1000000] [--samples 20]``.

The store is opened first (the daemon's migrations), then filled by one INSERT … SELECT
(a recursive CTE on SQLite, generate_series on PostgreSQL), which the counts' triggers see
as they see any insert: ten kinds, by ``id % 1000`` 1 % dead (three attempts, an error),
1 % pending, 0.5 % cancelled, 0.5 % succeeded on a second attempt (an error of the first),
the rest succeeded; the newest 20 running on one node; created a second apart up to now,
started a second and finished two seconds after (``started_at`` when the store has it).
The console runs in-process behind the admin app (httpx's ASGI transport: what is timed is
the server's work — queries and templates — no socket), over a real runtime on that store
with the repository's policies.toml served and reloaded once (so the policies page has a
diff). Each figure is the median of ``--samples`` requests after one warm-up, p90 beside.
PostgreSQL from GLADD_TEST_DATABASE_URL (a fresh database, dropped afterwards); SQLite in
a temp file.

Exits 1 when a target is missed.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import ROOT, Report, gladd_url, run_fill
from bench_stats import PG_ERROR, SQLITE_ERROR, _timed, command

from gladd.admin.app import create_app
from gladd.console.app import console_app
from gladd.policies import parse_policies
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store.factory import store_from_url
from gladd.store.listing import encode_cursor

TARGET_MS = 100.0
RUNNING = 20
NODE = "bench-node"
KINDS = (
    "email.send",
    "http.request",
    "report.build",
    "invoice.render",
    "image.resize",
    "search.index",
    "webhook.deliver",
    "sms.send",
    "export.csv",
    "cache.warm",
)
_KIND_ROWS = ", ".join(f"({n}, '{name}')" for n, name in enumerate(KINDS))

# One row per task: its state from id % 1000 (the newest RUNNING are running), its times
# from its id (a second apart, the newest now). {t} is the task's created time, {plus}(t, s)
# that time plus s seconds, in each store's own terms.
_STATE = (
    "CASE WHEN i > {rows} - {running} THEN 'running' "
    "WHEN i % 1000 < 10 THEN 'dead' WHEN i % 1000 < 20 THEN 'pending' "
    "WHEN i % 1000 < 25 THEN 'cancelled' ELSE 'succeeded' END"
)
_COLUMNS = (
    "kind, payload, state, attempt, max_attempts, token, owner, result, errors, "
    "created_at, updated_at, run_at, finished_at{started_column}"
)
_VALUES = (
    "k.name, {payload}, st, "
    "CASE st WHEN 'dead' THEN 3 WHEN 'pending' THEN 0 WHEN 'cancelled' THEN 0 "
    "ELSE 1 + CASE WHEN i % 1000 BETWEEN 25 AND 29 THEN 1 ELSE 0 END END, 3, "
    "CASE st WHEN 'pending' THEN 0 ELSE 1 END, "
    "CASE st WHEN 'running' THEN '{node}' END, "
    "CASE st WHEN 'succeeded' THEN {result} END, "
    "CASE WHEN st = 'dead' OR i % 1000 BETWEEN 25 AND 29 THEN {error} ELSE {no_errors} END, "
    "t, t, t, "
    "CASE WHEN st IN ('pending', 'running') THEN NULL ELSE {t_plus_2} END"
    "{started_value}"
)
_STARTED = ", CASE WHEN st IN ('pending', 'cancelled') THEN NULL ELSE {t_plus_1} END"


def _sql(*, store: str, rows: int, started: bool) -> str:
    if store == "sqlite":
        terms = {
            "payload": "'{\"to\": \"user' || i || '@example.com\"}'",
            "result": "'{\"sent\": true}'",
            "error": "?",
            "no_errors": "'[]'",
            "t_plus_1": "t + 1000000",
            "t_plus_2": "t + 2000000",
        }
        source = (
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}), "
            "k(n, name) AS (VALUES {kinds}) "
            "INSERT INTO gladd_tasks ({columns}) SELECT {values} FROM "
            "(SELECT i, {state} AS st, ? + i * 1000000 AS t FROM s) AS x "
            "JOIN k ON k.n = x.i % 10 ORDER BY x.i"
        )
    else:
        terms = {
            "payload": "jsonb_build_object('to', 'user' || i || '@example.com')",
            "result": "'{\"sent\": true}'::jsonb",
            "error": "$1::jsonb",
            "no_errors": "'[]'::jsonb",
            "t_plus_1": "t + interval '1 second'",
            "t_plus_2": "t + interval '2 seconds'",
        }
        source = (
            "WITH k(n, name) AS (VALUES {kinds}) "
            "INSERT INTO gladd_tasks ({columns}) SELECT {values} FROM "
            "(SELECT i, {state} AS st, now() - interval '1 second' * ({rows} - i) AS t "
            "FROM generate_series(1, {rows}) AS i) AS x "
            "JOIN k ON k.n = x.i % 10 ORDER BY x.i"
        )
    values = _VALUES.format(
        **terms,
        node=NODE,
        started_value=_STARTED.format(**terms) if started else "",
    )
    return source.format(
        rows=rows,
        kinds=_KIND_ROWS,
        columns=_COLUMNS.format(started_column=", started_at" if started else ""),
        values=values,
        state=_STATE.format(rows=rows, running=RUNNING),
    )


async def fill(url: str, rows: int) -> None:
    """``rows`` tasks and the running node's worker row, in one statement each."""
    now_us = int(time.time() * 1_000_000)

    def on_sqlite(conn: sqlite3.Connection) -> None:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(gladd_tasks)")}
        sql = _sql(store="sqlite", rows=rows, started="started_at" in columns)
        conn.execute(sql, (SQLITE_ERROR, now_us - rows * 1_000_000))
        conn.execute("INSERT INTO gladd_workers (id, last_seen) VALUES (?, ?)", (NODE, now_us))

    async def on_postgres(conn: asyncpg.Connection) -> None:
        started = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'gladd_tasks' AND column_name = 'started_at'"
        )
        await conn.execute(_sql(store="postgresql", rows=rows, started=bool(started)), PG_ERROR)
        await conn.execute("INSERT INTO gladd_workers (id, last_seen) VALUES ($1, now())", NODE)

    await run_fill(url, on_sqlite, on_postgres)


def pages(rows: int) -> list[tuple[str, str]]:
    """Each screen, and the task list's filters and pages an operator uses most."""
    middle = rows // 2
    dead_id = middle - middle % 1000 + 1005  # i % 1000 == 5: dead, with an error
    return [
        ("overview", "/ui/"),
        ("tasks: first page", "/ui/tasks"),
        ("tasks: state=dead kind=email.send", "/ui/tasks?state=dead&kind=email.send"),
        ("tasks: error=mailbox", "/ui/tasks?error=mailbox"),
        ("tasks: kind=nothing (no task has it)", "/ui/tasks?kind=nothing"),
        ("tasks: a page by cursor (half-way)", f"/ui/tasks?cursor={encode_cursor(middle)}"),
        (
            "tasks: state=dead, page by cursor",
            f"/ui/tasks?state=dead&cursor={encode_cursor(middle)}",
        ),
        ("tasks: bulk retry preview (dead)", "/ui/tasks/bulk?action=retry&state=dead"),
        ("task detail (dead, an error)", f"/ui/tasks/{dead_id}"),
        ("dead", "/ui/dead"),
        ("kinds", "/ui/kinds"),
        ("breakers", "/ui/breakers"),
        ("policies", "/ui/policies"),
    ]


async def measure(backend: str, rows: int, samples: int, report: Report) -> None:
    policies_file = ROOT / "policies.toml"
    data = policies_file.read_bytes()
    async with gladd_url(backend) as url:
        store = store_from_url(url)
        await store.open()  # the daemon's migrations
        try:
            started = time.perf_counter()
            await fill(url, rows)
            report.add(f"{backend}: fill {rows:,} tasks", f"{time.perf_counter() - started:.1f}s")
            with tempfile.TemporaryDirectory(prefix="gladd_bench_state_") as state_dir:
                runtime = Runtime(
                    Settings(state_dir=Path(state_dir), plugin_paths=(), node_name=NODE),
                    parse_policies(data, source=str(policies_file)),
                    store=store,
                )
                runtime.store_health.open()
                edited = data + b"\n# reloaded by the bench\n"
                runtime.policy_history.applied(
                    generation=2,
                    at=datetime.now(UTC),
                    trigger="api",
                    sha256="0" * 64,
                    source=str(policies_file),
                    data=edited,
                    changes=("a comment",),
                )
                app = create_app(
                    runtime.board,
                    tasks=runtime.tasks,
                    resilience=runtime.resilience,
                    now=runtime.wall_now,
                    policies=runtime.policy_history,
                    console=console_app(runtime.console_deps(token=None, read_only=False)),
                )
                transport = httpx.ASGITransport(app)
                async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
                    for what, path in pages(rows):
                        times = await _timed(c, path, samples)
                        median, p90 = statistics.median(times), sorted(times)[int(0.9 * samples)]
                        report.add(
                            f"{backend}: {what}",
                            f"{median:.1f} ms (p90 {p90:.1f})",
                            f"median ≤ {TARGET_MS:.0f} ms",
                        )
                        report.verdict(median <= TARGET_MS)
        finally:
            await store.close()


def main() -> int:
    return command(measure, __doc__, samples=20)


if __name__ == "__main__":
    sys.exit(main())
