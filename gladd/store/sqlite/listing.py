"""The SQLite store's listing, counts and workers (issue 14): the queries are in
``sql/queries.sql``, the counts table and its triggers in ``sql/0009_task_counts.sql``, the
rules they follow in :mod:`gladd.store.listing`. The functions run in the database thread."""

from __future__ import annotations

import json
import sqlite3

from gladd.store.base import TaskFilter, TaskPage, TaskStats, WorkerInfo
from gladd.store.listing import page_of, stats_of, upper_bound
from gladd.store.sqlite.queries import Q
from gladd.store.sqlite.rows import from_us, row_to_task, to_us

# Constant text, built once: the filter's conditions are written once in queries.sql.
FIND = Q["find"].replace("{task_filter}", Q["task_filter"])
FIND_IDS = Q["find_ids"].replace("{task_filter}", Q["task_filter"])
COUNT_MATCHING = Q["count_matching"].replace("{task_filter}", Q["task_filter"])


def _filter_params(where: TaskFilter, before: int | None) -> dict[str, object]:
    return {
        "states": json.dumps(sorted(str(s) for s in where.states)) if where.states else None,
        "kind": where.kind,
        "error": where.error,
        "since": None if where.since is None else to_us(where.since),
        "until": None if where.until is None else to_us(where.until),
        "below": upper_bound(where, before),
    }


def stats(conn: sqlite3.Connection) -> TaskStats:
    return stats_of(conn.execute(Q["task_stats"]).fetchall())


def find(conn: sqlite3.Connection, where: TaskFilter, limit: int, before: int | None) -> TaskPage:
    params = _filter_params(where, before) | {"limit": limit + 1}
    return page_of([row_to_task(r) for r in conn.execute(FIND, params)], limit)


def find_ids(
    conn: sqlite3.Connection, where: TaskFilter, limit: int, before: int | None
) -> list[int]:
    params = _filter_params(where, before) | {"limit": limit}
    return [row[0] for row in conn.execute(FIND_IDS, params)]


def count_matching(conn: sqlite3.Connection, where: TaskFilter) -> int:
    return int(conn.execute(COUNT_MATCHING, _filter_params(where, None)).fetchone()[0])


def workers(conn: sqlite3.Connection) -> list[WorkerInfo]:
    found = []
    for worker, seen_us, running in conn.execute(Q["worker_rows"]):
        seen = from_us(seen_us)
        assert seen is not None  # NOT NULL
        found.append(WorkerInfo(id=worker, last_seen=seen, running=int(running)))
    return found
