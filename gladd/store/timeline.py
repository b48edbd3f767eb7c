"""A task's timeline: what happened to it, one entry per state change (issue 14).

Each store keeps the timeline with the task (a JSON array column on ``gladd_tasks``) and
appends to it in the very statement that makes the change it records — the enqueue, the
claim, the outcome, the rescue, the operator's cancel or retry — so an entry is never there
without its change, nor a change without its entry, and the hot path pays one JSON append on
an UPDATE it makes anyway. A purge deletes it with its row.

An entry is a JSON object: ``at`` (ISO 8601, UTC), ``event`` (one of :data:`EVENTS`) and
the fields its event carries. The timeline is bounded (:func:`bounded`): the first
:data:`HEAD` entries (how the task began) and the last :data:`TAIL` (how it stands) are
kept; those between are replaced by one ``dropped`` entry counting them, so a task that is
postponed every few seconds for a day keeps a timeline of at most ``HEAD + 1 + TAIL``
entries. The rule is pure and shared: the memory store and SQLite (as the SQL function
``gladd_timeline``) call :func:`append_json`; PostgreSQL's ``gladd_timeline`` function
(0007_timeline.sql) is its translation, held to it by the store contract suite.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gladd.store.base import (
    Cancelled,
    Failed,
    Outcome,
    Released,
    Succeeded,
    Task,
    TaskState,
    TimelineEntry,
)

HEAD = 10
"""Entries kept from the start of a timeline."""

TAIL = 40
"""Entries kept from its end."""

CREATED = "created"  # source: cli | http | python | schedule
CLAIMED = "claimed"  # node, token
ATTEMPT_STARTED = "attempt started"  # attempt
ATTEMPT_ENDED = "attempt ended"  # attempt, duration, outcome, error, until
POSTPONED = "postponed"  # reason (breaker, cooldown, bulkhead, stop...), why, until
SNOOZED = "snoozed"  # until
RESCUED = "rescued"  # node (the owner it was taken from), why, state
FENCED = "fenced"  # node, token, outcome: a late result discarded
CANCEL_REQUESTED = "cancel requested"  # by
CANCELLED = "cancelled"  # by (an operator's cancel of a pending task)
RETRIED = "retried"  # by
DROPPED = "dropped"  # count: entries left out between the head and the tail

EVENTS = (
    CREATED,
    CLAIMED,
    ATTEMPT_STARTED,
    ATTEMPT_ENDED,
    POSTPONED,
    SNOOZED,
    RESCUED,
    FENCED,
    CANCEL_REQUESTED,
    CANCELLED,
    RETRIED,
    DROPPED,
)

SOURCES = ("cli", "http", "python", "schedule")
"""Who may have created a task (``NewTask.source``)."""

SNOOZE = "snooze"
"""The ``Released.reason`` of a handler's ``ctx.snooze``: recorded as ``snoozed``."""


def entry(at: datetime, event: str, **fields: Any) -> dict[str, Any]:
    """An entry as stored (``at`` must be timezone-aware UTC); None fields are left out."""
    return {
        "at": at.isoformat(),
        "event": event,
        **{k: v for k, v in fields.items() if v is not None},
    }


def bounded(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``entries`` kept to the first :data:`HEAD` and the last :data:`TAIL`, those between
    counted by one ``dropped`` entry at index ``HEAD`` (its ``at``: the last one dropped's).
    A ``dropped`` entry already there adds its count."""
    has_marker = len(entries) > HEAD and entries[HEAD].get("event") == DROPPED
    rest = HEAD + 1 if has_marker else HEAD
    cut = len(entries) - rest - TAIL
    if cut <= 0:
        return list(entries)
    earlier = int(entries[HEAD]["count"]) if has_marker else 0
    marker = {"at": entries[rest + cut - 1]["at"], "event": DROPPED, "count": earlier + cut}
    return [*entries[:HEAD], marker, *entries[rest + cut :]]


_EVENT_KEY = '"event":'
"""In compact JSON, once in every entry; inside a string only escaped (``\\"event\\":``),
which counts too: a count of it is never below the entries there are."""


def append_json(timeline: str | None, entries: str | None) -> str:
    """The timeline (compact JSON text) with ``entries`` (a compact JSON array's text)
    appended, bounded: SQLite's ``gladd_timeline(timeline, entries)``.

    On every claim and outcome, so the common case parses nothing: while the entries
    there cannot pass ``HEAD + TAIL`` (their ``"event":`` keys, counted in C, say so)
    the arrays are joined as text. Decoding and encoding the whole timeline in Python
    each time halved the SQLite drain (bench/bench_executor.py)."""
    old = timeline or "[]"
    new = entries or "[]"
    if old.count(_EVENT_KEY) + new.count(_EVENT_KEY) <= HEAD + TAIL:
        if new == "[]":
            return old
        if old == "[]":
            return new
        return f"{old[:-1]},{new[1:]}"
    joined = [*json.loads(old), *json.loads(new)]
    return json.dumps(bounded(joined), separators=(",", ":"))


def claimed_json(timeline: str | None, at: str, node: str, token: int, attempt: int) -> str:
    """The timeline with a claim's entries appended: ``claimed`` by ``node`` under the
    new ``token``, and ``attempt started`` (``at``: ISO 8601): SQLite's
    ``gladd_claimed``, as PostgreSQL's function of that name."""
    entries = (
        f'[{{"at":{json.dumps(at)},"event":"{CLAIMED}","node":{json.dumps(node)},'
        f'"token":{int(token)}}},{{"at":{json.dumps(at)},"event":"{ATTEMPT_STARTED}",'
        f'"attempt":{int(attempt)}}}]'
    )
    return append_json(timeline, entries)


def read_entries(raw: Sequence[Mapping[str, Any]]) -> tuple[TimelineEntry, ...]:
    """Stored entries as :class:`TimelineEntry` values."""
    return tuple(
        TimelineEntry(
            at=datetime.fromisoformat(e["at"]),
            event=str(e["event"]),
            # A field a store wrote as null (SQL's json_object) is one left out.
            fields={k: v for k, v in e.items() if k not in ("at", "event") and v is not None},
        )
        for e in raw
    )


def outcome_label(outcome: Outcome) -> str:
    """What ``attempt ended`` says of an outcome: succeeded, failed, dead, released,
    cancelled."""
    match outcome:
        case Succeeded():
            return "succeeded"
        case Failed(retry_at=None):
            return "dead"
        case Failed():
            return "failed"
        case Released():
            return "released"
        case Cancelled():
            return "cancelled"
    raise TypeError(f"not a task outcome: {outcome!r}")


def outcome_entries(outcome: Outcome, *, at: datetime) -> list[dict[str, Any]]:
    """The entries an outcome appends, the attempt number left for the store to set on the
    first (it knows it: the task's ``attempt``): ``attempt ended``, then for a release
    ``postponed`` (or ``snoozed``). A task whose cancellation was requested and that ends
    cancelled instead also gets :func:`cancelled_entry` (the store knows that too)."""
    ended = entry(
        at,
        ATTEMPT_ENDED,
        outcome=outcome_label(outcome),
        duration=None if outcome.duration is None else round(outcome.duration, 6),
    )
    match outcome:
        case Failed(error=error, retry_at=retry_at):
            ended["error"] = f"{error.type}: {error.message}"
            if retry_at is not None:
                ended["until"] = retry_at.isoformat()
        case Released(run_at=run_at, reason=reason, why=why):
            until = run_at.isoformat()
            if reason == SNOOZE:
                return [ended, entry(at, SNOOZED, until=until)]
            return [ended, entry(at, POSTPONED, reason=reason, why=why or None, until=until)]
    return [ended]


def outcome_json(outcome: Outcome, *, at: datetime, at_text: str) -> str:
    """:func:`outcome_entries` as compact JSON text (``at_text``: ``at`` in ISO 8601, made
    once per batch). A success, the commonest outcome by far, is formatted directly: a
    batch's entries built as dicts and encoded cost the SQLite drain a quarter of its
    rate (bench/bench_executor.py)."""
    if type(outcome) is Succeeded:
        took = "" if outcome.duration is None else f',"duration":{round(outcome.duration, 6)!r}'
        return f'[{{"at":"{at_text}","event":"{ATTEMPT_ENDED}","outcome":"succeeded"{took}}}]'
    return dumps(outcome_entries(outcome, at=at))


def with_entry(entries: str, entry_text: str) -> str:
    """Compact JSON array text ``entries`` with one more entry (its text) at the end."""
    return f"{entries[:-1]},{entry_text}]"


def cancelled_entry(at: datetime, by: str | None = None) -> dict[str, Any]:
    return entry(at, CANCELLED, by=by)


def fenced_entry(outcome: Outcome, *, at: datetime, node: str | None) -> dict[str, Any]:
    """A late result from an old token, discarded: which node sent it, under which token."""
    return entry(at, FENCED, node=node, token=outcome.token, outcome=outcome_label(outcome))


def rescued_entry(task: Task, *, at: datetime, live: bool, state: TaskState) -> dict[str, Any]:
    """A running task taken back from ``task.owner``: it died (not heard from within the
    lease) or the attempt ran past its deadline; ``state`` is where it went."""
    why = "deadline passed" if live else "owner dead"
    return entry(at, RESCUED, node=task.owner, why=why, state=str(state))


def dumps(entries: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(list(entries), separators=(",", ":"))
