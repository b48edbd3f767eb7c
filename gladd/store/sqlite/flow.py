"""The SQLite store's flow control: a gated claim, the gates' usage, pauses (the SQL is in
``sql/queries.sql``, the tables in ``sql/0004_flow.sql``).

Why a gated claim never starts more than a gate allows, on one file and across processes:
it runs inside one ``BEGIN IMMEDIATE`` transaction, which holds SQLite's write lock from
its first statement to its commit. It counts the running tasks, reads the buckets, picks
and starts its tasks, and stores the buckets, all under that lock: no other claim, by this
store or any process on the file, can start a task in between, so each claim counts every
start committed before it. Tasks leave ``running`` in other transactions, which can only
make the count high (the safe side); a rescue frees the slots of a dead worker's tasks.

The functions taking a connection run in the database thread, inside the transaction
:class:`~gladd.store.sqlite.store.SQLiteStore` opened.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gladd.store.base import Task
from gladd.store.gates import (
    NO_PARTITION,
    Bucket,
    Candidate,
    ClaimPlan,
    Gate,
    GatedRequest,
    LimitUsage,
    Pause,
    count_running,
    fields_of,
    kinds_of,
    narrowed,
    plan_claim,
    refill,
)
from gladd.store.rules import utc
from gladd.store.sqlite.queries import Q
from gladd.store.sqlite.rows import from_us, row_to_task, to_us


def claim_gated(conn: sqlite3.Connection, request: GatedRequest) -> tuple[list[Task], ClaimPlan]:
    """Plan the claim on what the transaction reads and start what the plan takes."""
    now_us = to_us(request.now)
    conn.execute(Q["seen"], (request.worker, now_us))
    gates, paths = request.gates, _paths(request.gates)
    running = _running(conn, gates, worker=request.worker, ended=request.ended)
    buckets = _buckets(conn, gates)
    kinds, scan = narrowed(
        gates,
        request.kinds,
        running=running,
        buckets=buckets,
        limit=request.limit,
        scan=request.scan,
        now=request.now,
    )
    rows = []
    if kinds:
        params = {"now": now_us, "kinds": json.dumps(kinds), "scan": scan, "paths": paths}
        rows = conn.execute(Q["gated_candidates"], params).fetchall()
    fields = fields_of(gates)
    candidates = [Candidate(id=i, kind=k, parts=_parts(p, fields)) for i, k, p in rows]
    plan = plan_claim(
        gates,
        candidates,
        running=running,
        buckets=buckets,
        limit=request.limit,
        now=request.now,
    )
    tasks: list[Task] = []
    if plan.take:
        start = {
            "worker": request.worker,
            "now": now_us,
            "ids": json.dumps(plan.take),
            "at": request.now.isoformat(),
        }
        tasks = [row_to_task(r) for r in conn.execute(Q["gated_start"], start).fetchall()]
        tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))  # RETURNING has no order
    conn.executemany(
        Q["limit_bucket_store"],
        [(g, p, b.tokens, to_us(b.at)) for (g, p), b in plan.buckets.items()],
    )
    return tasks, plan


def limit_usage(conn: sqlite3.Connection, gates: Sequence[Gate], now: datetime) -> LimitUsage:
    rated = {gate.name: gate for gate in gates if gate.rate is not None}
    tokens = {
        key: refill(rated[key[0]], bucket, now) for key, bucket in _buckets(conn, gates).items()
    }
    return LimitUsage(running=_running(conn, gates), tokens=dict(sorted(tokens.items())))


def _running(
    conn: sqlite3.Connection,
    gates: Sequence[Gate],
    *,
    worker: str = "",
    ended: Sequence[int] = (),
) -> dict[tuple[str, str], int]:
    kinds = kinds_of(gates)
    if not kinds:
        return {}
    fields = fields_of(gates)
    params = {
        "kinds": json.dumps(kinds),
        "paths": _paths(gates),
        "worker": worker,
        "ended": json.dumps(list(ended)),
    }
    counts: dict[tuple[str, str], int] = {}
    for kind, parts, n in conn.execute(Q["gated_running"], params):
        task = Candidate(id=0, kind=kind, parts=_parts(parts, fields))
        for key, one in count_running(gates, [task]).items():
            counts[key] = counts.get(key, 0) + one * n
    return counts


def _buckets(conn: sqlite3.Connection, gates: Sequence[Gate]) -> dict[tuple[str, str], Bucket]:
    names = json.dumps(sorted(gate.name for gate in gates if gate.rate is not None))
    rows = conn.execute(Q["limit_buckets"], {"gates": names})
    return {(g, p): Bucket(tokens=tokens, at=_time(at)) for g, p, tokens, at in rows}


def _paths(gates: Sequence[Gate]) -> str:
    """The JSON object of partition field → JSON path the queries extract. SQLite's paths
    have no escape for a double quote: a field with one is not extracted, and every task
    falls in its shared partition (strict, not lax)."""
    return json.dumps({f: f'$."{f}"' for f in fields_of(gates) if '"' not in f})


def _parts(text: str | None, fields: Sequence[str]) -> dict[str, str]:
    found = json.loads(text) if text else {}
    return {field: found.get(field) or NO_PARTITION for field in fields}


def _time(us: int) -> datetime:
    moment = from_us(us)
    assert moment is not None
    return moment


# -- pauses ---------------------------------------------------------------------------------


def pause_row(pause: Pause) -> tuple[str, str, int | None, str, int]:
    until = None if pause.until is None else to_us(utc(pause.until, "until"))
    created = to_us(utc(pause.created_at, "created_at"))
    return pause.target, pause.reason, until, pause.by, created


def row_to_pause(row: sqlite3.Row | tuple[Any, ...]) -> Pause:
    target, reason, until, by, created_at = row
    return Pause(
        target=target, reason=reason, until=from_us(until), by=by, created_at=_time(created_at)
    )
