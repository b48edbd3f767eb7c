"""The memory store's flow-control state: token buckets and pauses, in dicts.

What the SQL stores keep in ``gladd_limit_tokens`` and ``gladd_pauses``. The decisions are
:mod:`gladd.store.gates`' alone, so the memory store's gated claim is the others' claim.
Tasks come in as the memory store keeps them (payload as JSON text).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from gladd.store.base import Task, TaskState
from gladd.store.gates import (
    Bucket,
    Candidate,
    ClaimPlan,
    Gate,
    LimitUsage,
    Pause,
    count_running,
    fields_of,
    kinds_of,
    narrowed,
    part_text,
    plan_claim,
    refill,
)
from gladd.store.rules import utc


class FlowBook:
    """Buckets by (gate, partition) and pauses by target."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._pauses: dict[str, Pause] = {}

    def plan(
        self,
        tasks: Iterable[Task],
        *,
        gates: Sequence[Gate],
        kinds: Sequence[str],
        scan: int,
        limit: int,
        now: datetime,
    ) -> ClaimPlan:
        """Which of ``tasks`` a gated claim starts; the tokens they spend are spent."""
        tasks = list(tasks)
        running = _running(tasks, gates)
        open_kinds, scan = narrowed(
            gates, kinds, running=running, buckets=self._buckets, limit=limit, scan=scan, now=now
        )
        fields, wanted = fields_of(gates), set(open_kinds)
        due = sorted(
            (t for t in tasks if t.state is TaskState.PENDING and t.run_at <= now),
            key=lambda t: (-t.priority, t.run_at, t.id),
        )
        candidates = [_candidate(t, fields) for t in due if t.kind in wanted][:scan]
        plan = plan_claim(
            gates,
            candidates,
            running=running,
            buckets=self._buckets,
            limit=limit,
            now=now,
        )
        self._buckets.update(plan.buckets)
        return plan

    def usage(self, tasks: Iterable[Task], gates: Sequence[Gate], now: datetime) -> LimitUsage:
        rated = {gate.name: gate for gate in gates if gate.rate is not None}
        tokens = {
            key: refill(rated[key[0]], bucket, now)
            for key, bucket in sorted(self._buckets.items())
            if key[0] in rated
        }
        return LimitUsage(running=_running(tasks, gates), tokens=tokens)

    def active(self, now: datetime) -> list[Pause]:
        return [p for _, p in sorted(self._pauses.items()) if p.active(now)]

    def pause(self, pause: Pause) -> Pause:
        stored = _stored(pause)
        self._pauses[stored.target] = stored
        return stored

    def resume(self, target: str, now: datetime) -> Pause | None:
        removed = self._pauses.pop(target, None)
        return removed if removed is not None and removed.active(now) else None

    def sweep(self, now: datetime, idle: float) -> int:
        expired = [t for t, p in self._pauses.items() if not p.active(now)]
        cutoff = now - timedelta(seconds=idle)
        stale = [key for key, bucket in self._buckets.items() if bucket.at < cutoff]
        for target in expired:
            del self._pauses[target]
        for key in stale:
            del self._buckets[key]
        return len(expired) + len(stale)


def _running(tasks: Iterable[Task], gates: Sequence[Gate]) -> dict[tuple[str, str], int]:
    fields, kinds = fields_of(gates), set(kinds_of(gates))
    running = (
        _candidate(t, fields) for t in tasks if t.state is TaskState.RUNNING and t.kind in kinds
    )
    return count_running(gates, running)


def _candidate(task: Task, fields: Sequence[str]) -> Candidate:
    """``task`` with the values of the partition fields in its payload (JSON text)."""
    payload = json.loads(task.payload) if fields else None
    found = payload if isinstance(payload, dict) else {}
    parts = {field: part_text(found.get(field)) for field in fields}
    return Candidate(id=task.id, kind=task.kind, parts=parts)


def _stored(pause: Pause) -> Pause:
    """``pause`` as a store keeps it: its times in UTC (ValueError for a naive one)."""
    until = None if pause.until is None else utc(pause.until, "until")
    return replace(pause, until=until, created_at=utc(pause.created_at, "created_at"))
