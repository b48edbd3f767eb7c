"""The rules every store shares beyond ``base.py``'s state machine, as small pure functions.

The memory, SQLite and PostgreSQL stores all import them, and the contract suite holds
each store to them:

- ``enqueue`` refuses what no store can keep (:func:`check_new_task`);
- a task whose cancellation was requested never goes back to pending: a ``Released`` or a
  retried ``Failed`` outcome, or a rescue, finishes it as cancelled instead;
- ``rescue`` sends a task to dead when its rescues would exceed the cap, or when an attempt
  hung past its deadline on a live worker and no attempts remain; a worker that died does
  not spend the task's attempt (:func:`rescue_verdict`); the reason goes in its history;
- ``claim`` and ``heartbeat`` count as signs of life of the worker; a running task whose
  owner has no worker row (forgotten, or never heard of) is rescued like a dead worker's;
- a worker is dead when it has not been heard from for ``lease`` seconds or more, a task is
  past its deadline when ``now`` is strictly later than it;
- ``purge`` deletes finished tasks only: asked for another state it refuses
  (:func:`purge_states`), since a pending or running task is work still owed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import anyio

from gladd.errors import TaskRejected
from gladd.store.base import JSON, NewTask, Task, TaskError, TaskState

PRIORITY_RANGE = range(-(2**31), 2**31)  # a PostgreSQL integer: the narrowest store decides
RESCUED = "Rescued"  # TaskError.type recorded when a rescue takes a task from its owner


def utc(moment: datetime, name: str = "now") -> datetime:
    """``moment`` in UTC; a naive datetime is a programming error, not a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (UTC), got {moment!r}")
    return moment.astimezone(UTC)


def purge_states(states: Collection[TaskState]) -> tuple[str, ...]:
    """The state names a purge deletes from, sorted; ValueError for an unfinished one."""
    unfinished = sorted(s.value for s in states if not s.finished)
    if unfinished:
        raise ValueError(f"purge deletes finished tasks only, not {', '.join(unfinished)} ones")
    return tuple(sorted(s.value for s in states))


def pending_task(
    new: NewTask, *, task_id: int, payload: JSON, run_at: datetime, now: datetime
) -> Task:
    """The task ``new`` becomes the moment it is stored: pending, never attempted."""
    return Task(
        id=task_id,
        kind=new.kind,
        payload=payload,
        state=TaskState.PENDING,
        priority=new.priority,
        run_at=run_at,
        attempt=0,
        max_attempts=new.max_attempts,
        timeout=new.timeout,
        unique_key=new.unique_key,
        owner=None,
        token=0,
        rescues=0,
        deadline=None,
        cancel_requested=False,
        result=None,
        errors=(),
        created_at=now,
        updated_at=now,
        finished_at=None,
    )


def dump_json(value: JSON, what: str) -> str:
    """``value`` as compact JSON text, or TypeError naming ``what`` cannot be stored."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from exc


def check_new_task(task: NewTask, *, now: datetime) -> tuple[str, datetime]:
    """Refuse what no store can keep; returns the payload as JSON text and the ``run_at``."""
    problems: list[str] = []
    if not isinstance(task.kind, str) or not task.kind.strip():
        problems.append("kind must be a non-empty string")
    if task.max_attempts < 1:
        problems.append(f"max_attempts must be at least 1, got {task.max_attempts}")
    if task.timeout is not None and not (math.isfinite(task.timeout) and task.timeout > 0):
        problems.append(f"timeout must be a positive number of seconds, got {task.timeout}")
    if task.priority not in PRIORITY_RANGE:
        problems.append(f"priority must be a 32-bit integer, got {task.priority}")
    if task.unique_key is not None and not task.unique_key:
        problems.append("unique_key must be None or a non-empty string")
    if task.run_at is not None and task.run_at.utcoffset() is None:
        problems.append(f"run_at must be timezone-aware, got {task.run_at!r}")
    payload = ""
    try:
        payload = dump_json(task.payload, "payload")
    except TypeError as exc:
        problems.append(str(exc))
    if problems:
        raise TaskRejected(f"task of kind {task.kind!r} refused: " + "; ".join(problems))
    return payload, utc(task.run_at, "run_at") if task.run_at is not None else now


def deadline_for(timeout: float | None, now: datetime) -> datetime | None:
    return None if timeout is None else now + timedelta(microseconds=round(timeout * 1e6))


def rescue_verdict(task: Task, *, max_rescues: int, live: bool) -> TaskState:
    """Where a rescued running task goes (see the module docstring).

    A worker that died is not the task's failure: its attempt does not count against
    ``max_attempts`` (a crash must not kill a single-attempt task), only against the
    poison-pill cap. An attempt that hung past its deadline on a live worker did fail."""
    if task.cancel_requested:
        return TaskState.CANCELLED
    if task.rescues + 1 > max_rescues or (live and task.attempt >= task.max_attempts):
        return TaskState.DEAD
    return TaskState.PENDING


def rescue(
    task: Task, *, now: datetime, live: bool, max_rescues: int
) -> tuple[TaskState, TaskError]:
    """A running task taken back from its owner: where it goes (:func:`rescue_verdict`),
    and the entry that says why in its error history."""
    if live:
        assert task.deadline is not None
        late = (now - task.deadline).total_seconds()
        reason = f"attempt ran {late:g}s past its deadline; taken back from {task.owner!r}"
    else:
        reason = f"worker {task.owner!r} stopped heartbeating; attempt taken back"
    error = TaskError(type=RESCUED, message=reason, attempt=task.attempt, at=now)
    return rescue_verdict(task, max_rescues=max_rescues, live=live), error


class Wakeup:
    """A sticky, reusable wake-up: ``notify`` wakes every current waiter, or the next one.

    anyio events are single-use, so each notification replaces the event once consumed.
    Create it inside the event loop (in ``open``).
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        event = self._event
        if not event.is_set():
            with anyio.move_on_after(timeout):
                await event.wait()
        if not event.is_set():
            return False
        if self._event is event:
            self._event = anyio.Event()
        return True


def unique_conflict(task_id: int, key: str, other: int) -> TaskRejected:
    return TaskRejected(
        f"task {task_id} cannot be retried: task {other} with the same unique_key {key!r} "
        "is still unfinished"
    )
