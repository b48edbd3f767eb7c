"""Values to and from the PostgreSQL store's queries: a row as a :class:`Task`, and the
arrays a batch of enqueues or outcomes travels as."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from gladd.store import timeline as tl
from gladd.store.base import (
    Cancelled,
    Failed,
    NewTask,
    Outcome,
    Released,
    ScheduleState,
    Succeeded,
    Task,
    TaskError,
    TaskProgress,
    TaskState,
)
from gladd.store.catalogue import PublishedKind
from gladd.store.rules import dump_json, rescue, utc


def enqueue_args(
    tasks: Sequence[NewTask], checked: Sequence[tuple[str, datetime]], now: datetime
) -> tuple[object, ...]:
    return (
        now,
        [t.kind for t in tasks],
        [payload for payload, _ in checked],
        [t.priority for t in tasks],
        [run_at for _, run_at in checked],
        [t.max_attempts for t in tasks],
        [t.timeout for t in tasks],
        [t.traceparent for t in tasks],
        [t.schedule for t in tasks],
        [None if t.scheduled_for is None else utc(t.scheduled_for, "scheduled_for") for t in tasks],
        [t.source for t in tasks],  # the `created` entry's (queries.sql builds it)
        [t.unique_key for t in tasks],  # last: writes.enqueue_once reads it
    )


def finish_args(outcomes: Sequence[Outcome], now: datetime) -> tuple[tuple[object, ...], set[int]]:
    """Arrays per outcome type; an id named twice in one batch counts only the first time."""
    ok: tuple[list[Any], ...] = ([], [], [], [])
    failed: tuple[list[Any], ...] = ([], [], [], [], [])
    released: tuple[list[Any], ...] = ([], [], [], [])
    cancelled: tuple[list[Any], ...] = ([], [], [])
    seen: set[int] = set()
    first: set[int] = set()
    at = now.isoformat()
    for i, o in enumerate(outcomes):
        if o.id in seen:
            continue
        seen.add(o.id)
        first.add(i)
        entries = tl.outcome_json(o, at=now, at_text=at)
        if isinstance(o, Succeeded):
            _append(ok, o.id, o.token, dump_json(o.result, f"result of task {o.id}"), entries)
        elif isinstance(o, Failed):
            retry_at = None if o.retry_at is None else utc(o.retry_at, "retry_at")
            _append(failed, o.id, o.token, error_json(o.error), retry_at, entries)
        elif isinstance(o, Released):
            _append(released, o.id, o.token, utc(o.run_at, "run_at"), entries)
        elif isinstance(o, Cancelled):
            _append(cancelled, o.id, o.token, entries)
    ended = tl.dumps([tl.cancelled_entry(now)])
    return (now, *ok, *failed, *released, *cancelled, ended), first


def _append(columns: tuple[list[Any], ...], *values: object) -> None:
    for column, value in zip(columns, values, strict=True):
        column.append(value)


def error_json(error: TaskError) -> str:
    return json.dumps(
        {
            "type": error.type,
            "message": error.message,
            "attempt": error.attempt,
            "at": utc(error.at, "error.at").isoformat(),
        }
    )


def row_to_task(row: Any) -> Task:
    timeout = row["timeout"]
    return Task(
        id=row["id"],
        kind=row["kind"],
        payload=row["payload"],
        state=TaskState(row["state"]),
        priority=row["priority"],
        run_at=row["run_at"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        timeout=timeout,
        unique_key=row["unique_key"],
        owner=row["owner"],
        token=row["token"],
        rescues=row["rescues"],
        deadline=row["deadline"],
        cancel_requested=row["cancel_requested"],
        result=row["result"],
        errors=tuple(
            TaskError(
                type=e["type"],
                message=e["message"],
                attempt=e["attempt"],
                at=datetime.fromisoformat(e["at"]),
            )
            for e in row["errors"]
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        traceparent=row["traceparent"],
        schedule=row["schedule"],
        scheduled_for=row["scheduled_for"],
        progress=_progress(row),
        started_at=row["started_at"],
    )


def row_to_task_with_timeline(row: Any) -> Task:
    """A task as :meth:`Store.get` returns it: with its timeline."""
    task = row_to_task(row)
    return replace(task, timeline=tl.read_entries(row["timeline"] or ()))


def fenced_args(outcomes: Sequence[Outcome], now: datetime) -> tuple[object, ...]:
    """The ``fenced`` query's arrays for outcomes whose tokens did not hold."""
    return (
        [o.id for o in outcomes],
        [o.token for o in outcomes],
        [tl.dumps([tl.fenced_entry(o, at=now, node=o.node)]) for o in outcomes],
    )


def _progress(row: Any) -> TaskProgress | None:
    fraction, at = row["progress"], row["progress_at"]
    if fraction is None or at is None:
        return None
    return TaskProgress(
        fraction=fraction,
        message=row["progress_message"],
        at=at,
        attempt=row["progress_attempt"] or 0,
    )


def row_to_schedule(row: Any) -> ScheduleState:
    """A row of the ``schedule_states`` query (the last task's state joined)."""
    state = row["last_state"]
    return ScheduleState(
        name=row["name"],
        spec=row["spec"],
        last_tick=row["last_tick"],
        last_task=row["last_task"],
        last_fired_at=row["last_fired_at"],
        last_state=None if state is None else TaskState(state),
    )


def rescued(row: Any, now: datetime, max_rescues: int) -> tuple[int, str, str, str]:
    """(id, new state, error JSON, timeline entries JSON) of a running task taken back
    from its owner."""
    task = row_to_task(row)
    verdict, error = rescue(task, now=now, live=row["live"], max_rescues=max_rescues)
    entries = tl.dumps([tl.rescued_entry(task, at=now, live=row["live"], state=verdict)])
    return task.id, str(verdict), error_json(error), entries


def sorted_claim(rows: Sequence[Any]) -> list[Task]:
    tasks = [row_to_task(row) for row in rows]
    tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))
    return tasks


def row_to_kind(row: Any) -> PublishedKind:
    """A row of the ``kinds_catalogue`` query (``payload_schema`` decoded by the codec)."""
    return PublishedKind(
        name=row["name"],
        node=row["node"],
        plugin=row["plugin"],
        description=row["description"],
        payload_schema=row["payload_schema"],
        services=tuple(row["services"]),
        published_at=row["published_at"],
    )
