"""Values to and from SQLite rows: times as INTEGER microseconds since the Unix epoch (UTC),
JSON as TEXT, and a ``gladd_tasks`` row (``COLUMNS``, in that order: every query in
``sql/queries.sql`` that returns tasks names them so) as a :class:`Task`."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from gladd.store.base import ScheduleState, Task, TaskError, TaskProgress, TaskState
from gladd.store.catalogue import PublishedKind
from gladd.store.rules import load_json, utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

COLUMNS = (
    "id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key, "
    "owner, token, rescues, deadline, cancel_requested, result, errors, created_at, "
    "updated_at, finished_at, traceparent, schedule, scheduled_for, "
    "progress, progress_message, progress_at, progress_attempt, started_at"
)


def text_value(raw: bytes) -> str:
    """A TEXT value as str (the connection's text_factory): bytes that are not UTF-8, which
    only plain SQL can write, are replaced where the default would fail the whole query."""
    return raw.decode("utf-8", errors="replace")


def to_us(moment: datetime) -> int:
    return (moment - EPOCH) // _MICROSECOND


def from_us(us: int | None) -> datetime | None:
    return None if us is None else EPOCH + timedelta(microseconds=us)


def error_json(error: TaskError) -> str:
    record = {
        "type": error.type,
        "message": error.message,
        "attempt": error.attempt,
        "at": to_us(utc(error.at, "error.at")),
    }
    return json.dumps(record, separators=(",", ":"))


def _errors(text: str) -> tuple[TaskError, ...]:
    if text == "[]":
        return ()
    return tuple(
        TaskError(
            type=e["type"],
            message=e["message"],
            attempt=e["attempt"],
            at=EPOCH + timedelta(microseconds=e["at"]),
        )
        for e in json.loads(text)
    )


def row_to_task(row: sqlite3.Row | tuple[Any, ...]) -> Task:
    (id_, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key,
     owner, token, rescues, deadline, cancel_requested, result, errors, created_at,
     updated_at, finished_at, traceparent, schedule, scheduled_for,
     progress, progress_message, progress_at, progress_attempt, started_at) = row  # fmt: skip
    return Task(
        id=id_,
        kind=kind,
        payload=load_json(payload),
        state=TaskState(state),
        priority=priority,
        run_at=EPOCH + timedelta(microseconds=run_at),
        attempt=attempt,
        max_attempts=max_attempts,
        timeout=timeout,
        unique_key=unique_key,
        owner=owner,
        token=token,
        rescues=rescues,
        deadline=from_us(deadline),
        cancel_requested=bool(cancel_requested),
        result=None if result is None else load_json(result),
        errors=_errors(errors),
        created_at=EPOCH + timedelta(microseconds=created_at),
        updated_at=EPOCH + timedelta(microseconds=updated_at),
        finished_at=from_us(finished_at),
        traceparent=traceparent,
        schedule=schedule,
        scheduled_for=from_us(scheduled_for),
        progress=_progress(progress, progress_message, progress_at, progress_attempt),
        started_at=from_us(started_at),
    )


def _progress(
    fraction: float | None, message: str | None, at: int | None, attempt: int | None
) -> TaskProgress | None:
    if fraction is None or at is None:
        return None
    return TaskProgress(
        fraction=fraction,
        message=message,
        at=EPOCH + timedelta(microseconds=at),
        attempt=attempt or 0,
    )


def row_to_schedule(row: sqlite3.Row | tuple[Any, ...]) -> ScheduleState:
    """A row of the ``schedule_states`` query (the last task's state joined)."""
    name, spec, last_tick, last_task, last_fired_at, last_state = row
    return ScheduleState(
        name=name,
        spec=spec,
        last_tick=EPOCH + timedelta(microseconds=last_tick),
        last_task=last_task,
        last_fired_at=from_us(last_fired_at),
        last_state=None if last_state is None else TaskState(last_state),
    )


def schema_text(schema: Any) -> str | None:
    """A payload schema as stored: JSON text, NULL for none (any payload)."""
    return None if schema is None else json.dumps(schema, separators=(",", ":"))


def row_to_kind(row: sqlite3.Row | tuple[Any, ...]) -> PublishedKind:
    """A row of the ``kinds_catalogue`` query."""
    name, node, plugin, description, schema, services, published_at = row
    return PublishedKind(
        name=name,
        node=node,
        plugin=plugin,
        description=description,
        payload_schema=None if schema is None else load_json(schema),
        services=tuple(str(s) for s in load_json(services) or ()),
        published_at=EPOCH + timedelta(microseconds=published_at),
    )
