# ruff: noqa: S608 - SQL text is built from constants; values are parameters
"""The SQL that changes SQLite's ``gladd_tasks`` and ``gladd_workers``, and the writes made
of several statements. The functions taking a connection run in the database thread, inside
the transaction :class:`~gladd.store.sqlite.store.SQLiteStore` opened."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
    pending_task,
    rescue,
    utc,
)
from gladd.store.sqlite.rows import COLUMNS, EPOCH, error_json, from_us, row_to_task, to_us

_INSERT = (
    "INSERT INTO gladd_tasks (kind, payload, priority, run_at, max_attempts, timeout, "
    "unique_key, result, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'null', ?, ?)"
)
BY_KEY = (
    f"SELECT {COLUMNS} FROM gladd_tasks WHERE unique_key = ? AND state IN ('pending', 'running')"
)
SEEN = (
    "INSERT INTO gladd_workers (id, last_seen) VALUES (?, ?) "
    "ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
)
_CLAIM = f"""
UPDATE gladd_tasks SET
    state = 'running', owner = :worker, attempt = attempt + 1, token = token + 1,
    deadline = :now + CAST(round(timeout * 1000000) AS INTEGER), updated_at = :now
WHERE id IN (
    SELECT id FROM gladd_tasks
    WHERE state = 'pending' AND run_at <= :now {{kinds}}
    ORDER BY priority DESC, run_at, id LIMIT :limit
)
RETURNING {COLUMNS}
"""
CLAIM_ANY = _CLAIM.format(kinds="")
CLAIM_KINDS = _CLAIM.format(kinds="AND kind IN (SELECT value FROM json_each(:kinds))")

# Outcomes. Each applies only while the task is running under the token named; a task whose
# cancellation was requested finishes cancelled instead of going back to pending.
_FENCE = "WHERE id = :id AND token = :token AND state = 'running'"
_OFF_DUTY = "owner = NULL, deadline = NULL, updated_at = :now"
_APPEND_ERROR = "errors = json_insert(errors, '$[#]', json(:error))"
_TO_PENDING = """
    state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    run_at = CASE WHEN cancel_requested THEN run_at ELSE :run_at END,
    finished_at = CASE WHEN cancel_requested THEN :now END"""
SUCCEED = f"UPDATE gladd_tasks SET state = 'succeeded', result = :result, finished_at = :now, {_OFF_DUTY} {_FENCE}"  # noqa: E501
FAIL_DEAD = f"UPDATE gladd_tasks SET state = 'dead', finished_at = :now, {_APPEND_ERROR}, {_OFF_DUTY} {_FENCE}"  # noqa: E501
FAIL_RETRY = f"UPDATE gladd_tasks SET {_TO_PENDING}, {_APPEND_ERROR}, {_OFF_DUTY} {_FENCE}"
RELEASE = (
    f"UPDATE gladd_tasks SET {_TO_PENDING}, "
    f"attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt - 1 END, {_OFF_DUTY} {_FENCE}"
)
CANCELLED = f"UPDATE gladd_tasks SET state = 'cancelled', finished_at = :now, {_OFF_DUTY} {_FENCE}"
RESCUE = (
    "UPDATE gladd_tasks SET state = :state, run_at = :run_at, owner = NULL, deadline = NULL, "
    f"token = token + 1, rescues = rescues + 1, {_APPEND_ERROR}, updated_at = :now, "
    "finished_at = :finished_at WHERE id = :id"
)
RETRY = (
    "UPDATE gladd_tasks SET state = 'pending', run_at = :now, attempt = 0, rescues = 0, "
    "owner = NULL, deadline = NULL, cancel_requested = 0, result = 'null', finished_at = NULL, "
    f"updated_at = :now WHERE id = :id RETURNING {COLUMNS}"
)


@dataclass(frozen=True, slots=True)
class NewRow:
    """An enqueue, checked and converted in the event loop before the write."""

    new: NewTask
    payload: str
    run_at: int


def insert(conn: sqlite3.Connection, row: NewRow, now: int) -> Enqueued:
    new = row.new
    if new.unique_key is not None:
        existing = conn.execute(BY_KEY, (new.unique_key,)).fetchone()
        if existing is not None:
            return Enqueued(task=row_to_task(existing), created=False)
    cursor = conn.execute(
        _INSERT,
        (new.kind, row.payload, new.priority, row.run_at, new.max_attempts, new.timeout,
         new.unique_key, now, now),
    )  # fmt: skip
    assert cursor.lastrowid is not None
    created = from_us(now)
    assert created is not None
    task = pending_task(
        new,
        task_id=cursor.lastrowid,
        payload=json.loads(row.payload),
        run_at=EPOCH + timedelta(microseconds=row.run_at),
        now=created,
    )
    return Enqueued(task=task, created=True)


def outcome_write(outcome: Outcome, now: int) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"id": outcome.id, "token": outcome.token, "now": now}
    match outcome:
        case Succeeded(result=result):
            params["result"] = dump_json(result, f"result of task {outcome.id}")
            return SUCCEED, params
        case Failed(error=error, retry_at=retry_at):
            params["error"] = error_json(error)
            if retry_at is None:
                return FAIL_DEAD, params
            params["run_at"] = to_us(utc(retry_at, "retry_at"))
            return FAIL_RETRY, params
        case Released(run_at=run_at):
            params["run_at"] = to_us(utc(run_at, "run_at"))
            return RELEASE, params
        case Cancelled():
            return CANCELLED, params
    raise TypeError(f"not a task outcome: {outcome!r}")


def rescue_running(
    conn: sqlite3.Connection, now: datetime, lease: float, max_rescues: int
) -> RescueReport:
    now_us = to_us(now)
    cutoff = now_us - round(lease * 1e6)
    seen = dict(conn.execute("SELECT id, last_seen FROM gladd_workers").fetchall())
    dead = {w for w, last in seen.items() if last <= cutoff}
    lost = set(dead)
    to_pending: list[int] = []
    to_dead: list[int] = []
    for row in conn.execute(
        f"SELECT {COLUMNS} FROM gladd_tasks WHERE state = 'running'"
    ).fetchall():
        task = row_to_task(row)
        live = task.owner in seen and task.owner not in dead
        if live and (task.deadline is None or task.deadline >= now):
            continue
        if not live and task.owner is not None:
            lost.add(task.owner)
        state, error = rescue(task, now=now, live=live, max_rescues=max_rescues)
        pending = state is TaskState.PENDING
        conn.execute(
            RESCUE,
            {
                "id": task.id,
                "state": str(state),
                "run_at": now_us if pending else to_us(task.run_at),
                "error": error_json(error),
                "now": now_us,
                "finished_at": None if pending else now_us,
            },
        )
        if pending:
            to_pending.append(task.id)
        elif state is TaskState.DEAD:
            to_dead.append(task.id)
    conn.execute("DELETE FROM gladd_workers WHERE last_seen <= ?", (cutoff,))
    return RescueReport(
        to_pending=tuple(sorted(to_pending)),
        to_dead=tuple(sorted(to_dead)),
        dead_workers=tuple(sorted(lost)),
    )
