"""The rules every store shares beyond ``base.py``'s state machine, as small pure functions.

The memory, SQLite and PostgreSQL stores all import them, and the contract suite holds
each store to them:

- ``enqueue`` refuses what no store can keep (:func:`check_new_task`): besides the ranges,
  text with a NUL (PostgreSQL's text and jsonb cannot hold one) or a lone surrogate (not
  UTF-8: it could be stored but never served back), and JSON nested deeper than
  :data:`MAX_DEPTH` (decoders and encoders recurse);
- a task whose cancellation was requested never goes back to pending: a ``Released`` or a
  retried ``Failed`` outcome, or a rescue, finishes it as cancelled instead;
- ``rescue`` sends a task to dead when its rescues would exceed the cap, or when an attempt
  hung past its deadline on a live worker and no attempts remain; a worker that died does
  not spend the task's attempt (:func:`rescue_verdict`); the reason goes in its history;
- a task's ``traceparent`` is a W3C trace context header value (:data:`TRACEPARENT`) or
  None: whatever reads it later (an attempt's span) can trust its shape;
- ``advance_schedule`` is a compare-and-set on the schedule's last tick, and stores the
  tick's tasks in the same transaction: of nodes advancing the same tick, exactly one
  stores them; a task's ``scheduled_for`` is timezone-aware and kept in UTC;
- ``claim`` and ``heartbeat`` count as signs of life of the worker; a running task whose
  owner has no worker row (forgotten, or never heard of) is rescued like a dead worker's;
- a worker is dead when it has not been heard from for ``lease`` seconds or more, a task is
  past its deadline when ``now`` is strictly later than it;
- ``retry_many`` and ``cancel_many`` are the single ``retry`` and ``cancel`` applied to a set,
  :data:`~gladd.store.base.BULK_CHUNK` ids per statement (:func:`bulk_chunks`): of the tasks
  sharing a unique key none of which another unfinished task holds, the first given wins;
  the answer lists the ids changed and those skipped, in the order given
  (:func:`bulk_change`);
- ``purge`` deletes finished tasks only: asked for another state it refuses
  (:func:`purge_states`), since a pending or running task is work still owed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import anyio

from gladd.errors import TaskRejected, UniqueKeyHeld
from gladd.store.base import (
    BULK_CHUNK,
    JSON,
    BulkChange,
    NewTask,
    Task,
    TaskError,
    TaskState,
)

PRIORITY_RANGE = range(-(2**31), 2**31)  # a PostgreSQL integer: the narrowest store decides
MAX_DEPTH = 100
"""Levels of arrays and objects a payload may nest; far beyond any real payload, and far
below where Python's JSON encoder and decoder hit the recursion limit."""
TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
"""The ``traceparent`` header's shape (W3C Trace Context §3.2)."""
RESCUED = "Rescued"  # TaskError.type recorded when a rescue takes a task from its owner


def utc(moment: datetime, name: str = "now") -> datetime:
    """``moment`` in UTC; a naive datetime is a programming error, not a guess."""
    if moment.tzinfo is UTC:  # already (the clocks' own): nothing to convert
        return moment
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
        traceparent=new.traceparent,
        schedule=new.schedule,
        scheduled_for=None if new.scheduled_for is None else new.scheduled_for.astimezone(UTC),
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
"""Built once: ``json.dumps`` with any option builds a new encoder per call, half the cost
of encoding a small payload (bench/bench_producer.py)."""


def dump_json(value: JSON, what: str) -> str:
    """``value`` as compact JSON text, or TypeError naming ``what`` cannot be stored."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from exc


def load_json(text: str) -> JSON:
    """Stored JSON text as a value. Text that does not decode — written by plain SQL, which
    the schema invites: not JSON, or nested too deeply for Python's decoder — is returned as
    the string it is, so one such row cannot break every listing (or every claim)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def text_problem(text: str) -> str | None:
    """Why no store can keep ``text``, or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which the task store cannot keep"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = f"\\u{ord(text[exc.start]):04x}"
        return f"contains a lone surrogate ({bad}), which is not valid Unicode text"
    return None


def json_problem(value: JSON, what: str) -> str | None:
    """Why no store can keep the JSON ``value`` (a string in it, or its depth), or None.

    Walks iteratively, so a value too deep for the JSON encoder is reported, not crashed on.
    The message locates the problem: ``payload.items[2].name: contains a NUL...``."""
    stack: list[tuple[JSON, str, int]] = [(value, what, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"{where}: {problem}"
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return (
                    f"{what} is nested more than {MAX_DEPTH} levels deep; "
                    f"at most {MAX_DEPTH} levels of arrays and objects can be stored"
                )
            if isinstance(item, dict):
                for key, inner in item.items():
                    label = key if isinstance(key, str) else repr(key)
                    problem = text_problem(label)
                    if problem is not None:
                        return f"{where}: a key {problem}"
                    stack.append((inner, f"{where}.{label}", depth + 1))
            else:
                stack.extend((inner, f"{where}[{i}]", depth + 1) for i, inner in enumerate(item))
    return None


def check_new_task(task: NewTask, *, now: datetime) -> tuple[str, datetime]:
    """Refuse what no store can keep; returns the payload as JSON text and the ``run_at``."""
    problems = _text_problems(task)
    if task.max_attempts < 1:
        problems.append(f"max_attempts must be at least 1, got {task.max_attempts}")
    if task.timeout is not None and not (math.isfinite(task.timeout) and task.timeout > 0):
        problems.append(f"timeout must be a positive number of seconds, got {task.timeout}")
    if task.priority not in PRIORITY_RANGE:
        problems.append(f"priority must be a 32-bit integer, got {task.priority}")
    if task.run_at is not None and task.run_at.utcoffset() is None:
        problems.append(f"run_at must be timezone-aware, got {task.run_at!r}")
    if task.scheduled_for is not None and task.scheduled_for.utcoffset() is None:
        problems.append(f"scheduled_for must be timezone-aware, got {task.scheduled_for!r}")
    payload = ""
    if (problem := json_problem(task.payload, "payload")) is not None:
        problems.append(problem)
    else:
        try:
            payload = dump_json(task.payload, "payload")
        except TypeError as exc:
            problems.append(str(exc))
    if problems:
        raise TaskRejected(f"task of kind {task.kind!r} refused: " + "; ".join(problems))
    return payload, utc(task.run_at, "run_at") if task.run_at is not None else now


def _text_problems(task: NewTask) -> list[str]:
    """What is wrong with the text fields of ``task``: its kind, unique key, trace and
    schedule name."""
    problems: list[str] = []
    if not isinstance(task.kind, str) or not task.kind.strip():
        problems.append("kind must be a non-empty string")
    elif (problem := text_problem(task.kind)) is not None:
        problems.append(f"kind {problem}")
    if task.unique_key is not None and not task.unique_key:
        problems.append("unique_key must be None or a non-empty string")
    elif task.unique_key is not None and (problem := text_problem(task.unique_key)):
        problems.append(f"unique_key {problem}")
    if task.traceparent is not None and not TRACEPARENT.fullmatch(task.traceparent):
        problems.append(
            f"traceparent must be a W3C trace context (version-traceid-spanid-flags in "
            f"lower-case hex), got {task.traceparent[:80]!r}"
        )
    if task.schedule is not None and not task.schedule:
        problems.append("schedule must be None or a non-empty string")
    elif task.schedule is not None and (problem := text_problem(task.schedule)):
        problems.append(f"schedule {problem}")
    return problems


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


def unique_conflict(task_id: int, key: str, other: int) -> UniqueKeyHeld:
    """A conflict (HTTP 409, exit 1) rather than a refused task: the same retry succeeds
    once the other task has finished."""
    return UniqueKeyHeld(task_id, key, other)


def bulk_chunks(ids: Sequence[int]) -> list[list[int]]:
    """``ids`` without repeats (the first kept), in pieces of :data:`BULK_CHUNK`."""
    unique = list(dict.fromkeys(ids))
    return [unique[i : i + BULK_CHUNK] for i in range(0, len(unique), BULK_CHUNK)]


def bulk_change(ids: Sequence[int], changed: Collection[int]) -> BulkChange:
    """``ids`` (without repeats) split into those in ``changed`` and the rest, in order."""
    done = set(changed)
    unique = list(dict.fromkeys(ids))
    return BulkChange(
        changed=tuple(i for i in unique if i in done),
        skipped=tuple(i for i in unique if i not in done),
    )
