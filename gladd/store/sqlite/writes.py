"""The writes to SQLite's ``gladd_tasks``, ``gladd_workers`` and ``gladd_schedules`` made of
several statements
(their SQL is in ``sql/queries.sql``). The functions taking a connection run in the database
thread, inside the transaction :class:`~gladd.store.sqlite.store.SQLiteStore` opened."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gladd.store import timeline as tl
from gladd.store.base import (
    Cancelled,
    Enqueued,
    Failed,
    NewTask,
    Outcome,
    Released,
    RescueReport,
    Succeeded,
    TaskState,
)
from gladd.store.rules import (
    dump_json,
    rescue,
    utc,
)
from gladd.store.sqlite.queries import Q
from gladd.store.sqlite.rows import EPOCH, error_json, row_to_task, to_us


@dataclass(frozen=True, slots=True)
class NewRow:
    """An enqueue, checked and converted in the event loop before the write."""

    new: NewTask
    payload: str
    run_at: int


def insert(conn: sqlite3.Connection, row: NewRow, now: int) -> Enqueued:
    new = row.new
    at = (EPOCH + timedelta(microseconds=now)).isoformat()  # the `created` entry's
    scheduled_for = None if new.scheduled_for is None else to_us(new.scheduled_for)
    if new.unique_key is not None:
        existing = conn.execute(Q["unfinished_id_by_key"], (new.unique_key,)).fetchone()
        if existing is not None:
            return Enqueued(id=existing[0], created=False)
    cursor = conn.execute(
        Q["insert"],
        (new.kind, row.payload, new.priority, row.run_at, new.max_attempts, new.timeout,
         new.unique_key, new.traceparent, new.schedule, scheduled_for, now, now,
         at, new.source),
    )  # fmt: skip
    assert cursor.lastrowid is not None
    return Enqueued(id=cursor.lastrowid, created=True)


@dataclass(frozen=True, slots=True)
class Stamp:
    """A batch of outcomes' time, in the forms their statements take, made once."""

    now: datetime
    us: int
    iso: str

    @classmethod
    def of(cls, now: datetime) -> Stamp:
        return cls(now=now, us=to_us(now), iso=now.isoformat())


def outcome_write(outcome: Outcome, stamp: Stamp) -> tuple[str, dict[str, Any]]:
    entries = tl.outcome_json(outcome, at=stamp.now, at_text=stamp.iso)
    params: dict[str, Any] = {
        "id": outcome.id,
        "token": outcome.token,
        "now": stamp.us,
        "tail": entries[2:],  # queries.sql puts `[{"attempt":N,` before it
    }
    match outcome:
        case Succeeded(result=result):
            params["result"] = dump_json(result, f"result of task {outcome.id}")
            return Q["succeed"], params
        case Failed(error=error, retry_at=None):
            params["error"] = error_json(error)
            return Q["fail_dead"], params
    # The statements that may end the task cancelled (its cancellation was requested).
    cancelled = json.dumps(tl.cancelled_entry(stamp.now), separators=(",", ":"))
    params["if_cancelled_tail"] = tl.with_entry(entries, cancelled)[2:]
    match outcome:
        case Failed(error=error, retry_at=datetime() as retry_at):
            params.update(error=error_json(error), run_at=to_us(utc(retry_at, "retry_at")))
            return Q["fail_retry"], params
        case Released(run_at=run_at):
            params["run_at"] = to_us(utc(run_at, "run_at"))
            return Q["release"], params
        case Cancelled():
            return Q["cancelled"], params
    raise TypeError(f"not a task outcome: {outcome!r}")


def fenced(conn: sqlite3.Connection, outcome: Outcome, now: datetime) -> None:
    """An outcome whose token did not hold: its task's timeline says so (if its token
    moved on: a second outcome under the same token is no late result)."""
    entries = tl.dumps([tl.fenced_entry(outcome, at=now, node=outcome.node)])
    conn.execute(Q["fenced"], {"id": outcome.id, "token": outcome.token, "entries": entries})


def rescue_running(
    conn: sqlite3.Connection, now: datetime, lease: float, max_rescues: int
) -> RescueReport:
    now_us = to_us(now)
    cutoff = now_us - round(lease * 1e6)
    seen = dict(conn.execute(Q["workers"]).fetchall())
    dead = {w for w, last in seen.items() if last <= cutoff}
    lost = set(dead)
    to_pending: list[int] = []
    to_dead: list[int] = []
    for row in conn.execute(Q["running"]).fetchall():
        task = row_to_task(row)
        live = task.owner in seen and task.owner not in dead
        if live and (task.deadline is None or task.deadline >= now):
            continue
        if not live and task.owner is not None:
            lost.add(task.owner)
        state, error = rescue(task, now=now, live=live, max_rescues=max_rescues)
        pending = state is TaskState.PENDING
        conn.execute(
            Q["rescue"],
            {
                "id": task.id,
                "state": str(state),
                "run_at": now_us if pending else to_us(task.run_at),
                "error": error_json(error),
                "now": now_us,
                "finished_at": None if pending else now_us,
                "entries": tl.dumps([tl.rescued_entry(task, at=now, live=live, state=state)]),
            },
        )
        if pending:
            to_pending.append(task.id)
        elif state is TaskState.DEAD:
            to_dead.append(task.id)
    conn.execute(Q["forget_workers_seen_before"], (cutoff,))
    return RescueReport(
        to_pending=tuple(sorted(to_pending)),
        to_dead=tuple(sorted(to_dead)),
        dead_workers=tuple(sorted(lost)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    """A schedule's compare-and-set, its times in microseconds (``expected`` None: the
    schedule has no row yet)."""

    name: str
    spec: str
    expected: int | None
    to: int
    now: int


def advance_schedule(
    conn: sqlite3.Connection, advance: Advance, rows: Sequence[NewRow]
) -> list[Enqueued] | None:
    """Move the schedule's row from ``expected`` to ``to`` and store its tasks; None, having
    changed nothing, when the row is not at ``expected`` (another process advanced it)."""
    params = {"name": advance.name, "spec": advance.spec, "to": advance.to, "now": advance.now}
    if advance.expected is None:
        cursor = conn.execute(Q["schedule_insert"], params)
    else:
        cursor = conn.execute(Q["schedule_advance"], {**params, "expected": advance.expected})
    if cursor.rowcount != 1:
        return None
    enqueued = [insert(conn, row, advance.now) for row in rows]
    if enqueued:
        fired = {"name": advance.name, "task": enqueued[-1].id, "now": advance.now}
        conn.execute(Q["schedule_fired"], fired)
    return enqueued
