"""The PostgreSQL store's flow control: a gated claim across nodes, the gates' usage, and
pauses (SQL in ``sql/queries.sql``, tables in ``sql/0004_flow.sql``).

Why no two nodes' claims together start more than a gate allows
---------------------------------------------------------------

A gated claim (:func:`claim_gated`) is one transaction at READ COMMITTED:

1. ``gate_locks`` locks every one of its gates' rows in ``gladd_limits`` ``FOR UPDATE``, in
   name order; when a gate is new (fewer rows came back than gates), ``gate_rows`` creates
   the missing rows and ``gate_locks`` runs again, and the claim goes on only once it holds
   a row lock for every gate;
2. then, in statements started after those locks were granted, it counts the running tasks
   of every kind its gates cover, reads their buckets, and reads its candidates;
3. it starts the tasks :func:`~gladd.store.gates.plan_claim` takes, stores the buckets it
   spent, and commits, which releases the locks.

Claim: when a gated claim C of gate G counts, every task of G's kinds running or committed
as started is in its count, except those that left ``running`` since.

- Every claim that starts a task of a gated kind is a gated claim holding the row lock of
  each gate covering that kind (the executor claims gated kinds only through
  :meth:`~PostgresStore.claim_gated`, with every gate of those kinds), from before it
  counts until its commit.
- Two claims of G therefore do not overlap between lock and commit: the later one, C,
  is granted the lock only once the earlier one, E, has committed (or rolled back,
  starting nothing).
- At READ COMMITTED each statement takes its snapshot when it starts. C's count starts
  after its lock was granted, so after E committed: E's starts are in C's snapshot. By
  induction over the order in which G's lock was granted, so are the starts of every
  earlier holder.
- So C counts at least every task started under G's lock that is still running, and
  plan_claim starts a task only while that count plus C's own starts stays under the
  gate's concurrency (and a token is left in its bucket, read under the same lock, so the
  rate holds the same way). Nothing else starts tasks of G's kinds.
- Tasks leave ``running`` (finish, release, rescue) without the lock. A count that missed
  such a departure is too high, never too low: the safe side. A task of a dead node stays
  running, holding its slot, until the rescue takes it back; then its slot is free.

The locks are taken in one statement, in name order, so two claims never wait for each
other in a cycle. A claim that must create a row does so only after that statement has
locked every row that exists: it may then wait only for another claim inserting the same
new row, which is past its own first statement too and waits for nothing this one holds.
Candidates
are read without row locks: every gated claim of the same gates is ordered by the gates'
locks already, and the start (``gated_start``) takes a row only while it is still pending
— a row changed by a writer in flight (a cancel, or a node whose policies gate the kind
differently, mid-reload) is re-checked once that writer commits, and left out when it is
no longer pending, so no task is ever started twice. Locking the candidates instead would
write a row lock per task read on every claim, most of them held back.

The gate's lock serialises the claims of one gate across every node: with one gate
shared by many kinds, their claims go one at a time (each a few milliseconds), which is
what a shared limit costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from gladd.store.base import Task
from gladd.store.gates import (
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
from gladd.store.postgres.queries import Q
from gladd.store.postgres.rows import sorted_claim


async def claim_gated(conn: Any, request: GatedRequest) -> tuple[list[Task], ClaimPlan]:
    """The gated claim, in one transaction (see the module docstring)."""
    gates, fields = request.gates, list(fields_of(request.gates))
    names = sorted({gate.name for gate in gates})
    # Named, not left to the server's default: at REPEATABLE READ the snapshot would be
    # taken by the first statement, before the locks, and the proof above would not hold.
    async with conn.transaction(isolation="read_committed"):
        locked = await conn.fetch(Q["gate_locks"], names)
        if len(locked) < len(names):  # a gate's first claim: make its row, then lock it
            await conn.execute(Q["gate_rows"], names)
            locked = await conn.fetch(Q["gate_locks"], names)
        if len(locked) < len(names):  # nothing deletes them; a claim must not go unlocked
            missing = sorted(set(names) - {row["name"] for row in locked})
            raise RuntimeError(f"gladd_limits has no row for the gate(s) {missing}")
        # From here on, each statement's snapshot is later than the locks: see above.
        running = await _running(conn, gates, worker=request.worker, ended=request.ended)
        buckets = await _buckets(conn, gates)
        kinds, scan = narrowed(
            gates,
            request.kinds,
            running=running,
            buckets=buckets,
            limit=request.limit,
            scan=request.scan,
            now=request.now,
        )
        rows = await conn.fetch(
            Q["gated_candidates"], request.worker, request.now, list(kinds), scan, fields
        )
        candidates = [
            Candidate(id=r["id"], kind=r["kind"], parts=dict(zip(fields, r["parts"], strict=True)))
            for r in rows
        ]
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
            started = await conn.fetch(
                Q["gated_start"],
                request.worker,
                request.now,
                list(plan.take),
                request.claim_id,
                request.now.isoformat(),  # the timeline's
            )
            tasks = sorted_claim(started)
        if plan.buckets:
            keys, spent = list(plan.buckets), list(plan.buckets.values())
            await conn.execute(
                Q["limit_bucket_store"],
                [gate for gate, _ in keys],
                [part for _, part in keys],
                [bucket.tokens for bucket in spent],
                [bucket.at for bucket in spent],
            )
    return tasks, plan


async def usage_of(conn: Any, gates: Sequence[Gate], now: datetime) -> ClaimPlan:
    """How the gates stand, as a plan that takes nothing (no lock: a report)."""
    running, buckets = await _running(conn, gates), await _buckets(conn, gates)
    return plan_claim(gates, [], running=running, buckets=buckets, limit=0, now=now)


async def limit_usage(conn: Any, gates: Sequence[Gate], now: datetime) -> LimitUsage:
    rated = {gate.name: gate for gate in gates if gate.rate is not None}
    running, buckets = await _running(conn, gates), await _buckets(conn, gates)
    tokens = {key: refill(rated[key[0]], bucket, now) for key, bucket in sorted(buckets.items())}
    return LimitUsage(running=running, tokens=tokens)


async def _running(
    conn: Any, gates: Sequence[Gate], *, worker: str = "", ended: Sequence[int] = ()
) -> dict[tuple[str, str], int]:
    kinds, fields = list(kinds_of(gates)), list(fields_of(gates))
    if not kinds:
        return {}
    counts: dict[tuple[str, str], int] = {}
    for row in await conn.fetch(Q["gated_running"], kinds, fields, worker, list(ended)):
        parts = dict(zip(fields, row["parts"], strict=True))
        for key, one in count_running(
            gates, [Candidate(id=0, kind=row["kind"], parts=parts)]
        ).items():
            counts[key] = counts.get(key, 0) + one * row["n"]
    return counts


async def _buckets(conn: Any, gates: Sequence[Gate]) -> dict[tuple[str, str], Bucket]:
    names = sorted(gate.name for gate in gates if gate.rate is not None)
    if not names:
        return {}
    rows = await conn.fetch(Q["limit_buckets"], names)
    return {(r["gate"], r["part"]): Bucket(tokens=r["tokens"], at=r["at"]) for r in rows}


def row_to_pause(row: Any) -> Pause:
    return Pause(
        target=row["target"],
        reason=row["reason"],
        until=row["until"],
        by=row["by"],
        created_at=row["created_at"],
    )


def bucket_cutoff(now: datetime, idle: float) -> datetime:
    """The oldest bucket a sweep keeps: one untouched for ``idle`` seconds goes."""
    return now - timedelta(seconds=idle)
