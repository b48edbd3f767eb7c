"""The PostgreSQL store's listing, counts and workers (issue 14): the queries are in
``sql/queries.sql``, the counts table and its triggers in ``sql/0009_task_counts.sql``, the
rules they follow in :mod:`gladd.store.listing`. Each function runs on the connection the
store lends it."""

from __future__ import annotations

from typing import Any

from gladd.store.base import TaskFilter, TaskPage, TaskStats, WorkerInfo
from gladd.store.listing import page_of, stats_of, upper_bound
from gladd.store.postgres.queries import Q
from gladd.store.postgres.rows import row_to_task

FOLD_LOCK = 0x676C61646409  # "glad" "d" 9: pg_advisory_xact_lock key of the counts' fold
# Constant text, built once: the filter's conditions are written once in queries.sql.
FIND = Q["find"].replace("{task_filter}", Q["task_filter"])
FIND_IDS = Q["find_ids"].replace("{task_filter}", Q["task_filter"])
COUNT_MATCHING = Q["count_matching"].replace("{task_filter}", Q["task_filter"])


def _filter_args(where: TaskFilter, before: int | None) -> tuple[object, ...]:
    return (
        sorted(str(s) for s in where.states),
        where.kind,
        where.error,
        where.since,
        where.until,
        upper_bound(where, before),
    )


async def stats(conn: Any) -> TaskStats:
    """The counts, folding the deltas on the way unless another read is folding them."""
    async with conn.transaction():
        if await conn.fetchval(Q["task_stats_fold_lock"], FOLD_LOCK):
            rows = await conn.fetch(Q["task_stats_fold"])
        else:
            rows = await conn.fetch(Q["task_stats"])
    return stats_of((r["kind"], r["state"], r["n"]) for r in rows)


async def find(conn: Any, where: TaskFilter, limit: int, before: int | None) -> TaskPage:
    rows = await conn.fetch(FIND, *_filter_args(where, before), limit + 1)
    return page_of([row_to_task(r) for r in rows], limit)


async def find_ids(conn: Any, where: TaskFilter, limit: int, before: int | None) -> list[int]:
    rows = await conn.fetch(FIND_IDS, *_filter_args(where, before), limit)
    return [row["id"] for row in rows]


async def count_matching(conn: Any, where: TaskFilter) -> int:
    return int(await conn.fetchval(COUNT_MATCHING, *_filter_args(where, None)))


async def workers(conn: Any) -> list[WorkerInfo]:
    rows = await conn.fetch(Q["worker_rows"])
    return [
        WorkerInfo(id=r["id"], last_seen=r["last_seen"], running=int(r["running"])) for r in rows
    ]
