"""What every store shares about finding tasks (issue 14): the filter rule, the keyset
cursor, a page, the counts by state and kind (the value types are in :mod:`.base`).

Pages are keyset pages on the task id, newest first: a page ends at its last id and the next
one starts below it. Ids only grow, so a task added while an operator pages lands above the
first page and never shifts a later one: no task is skipped or shown twice, as an offset
would (``OFFSET 100`` counts the rows that came in since the first page). The cursor is the
last id, base64-encoded: opaque, so it may carry more later without breaking callers.

The rules here are pure; each store turns a :class:`TaskFilter` into its own query, and
:func:`matches` is the reference they are tested against.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from gladd.durations import parse_duration
from gladd.store.base import Task, TaskFilter, TaskPage, TaskState, TaskStats

MAX_PAGE = 1000
"""The most tasks one page holds; a larger ``limit`` is refused, not cut silently."""
DEFAULT_PAGE = 100
MAX_ERROR_TEXT = 200
"""The longest error text to search for, in characters."""
_CURSOR = re.compile(r"[0-9]{1,19}")
_LIMIT = re.compile(r"[0-9]{1,30}")  # ASCII digits: str.isdigit() takes "²", int() does not


class BadListing(ValueError):
    """A listing parameter that cannot be used; ``param`` names it, as the API and CLI say."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def matches(where: TaskFilter, task: Task) -> bool:
    """The reference rule the stores' queries follow."""
    return (
        (not where.states or task.state in where.states)
        and (where.kind is None or task.kind == where.kind)
        and (where.error is None or _has_error(task, where.error))
        and (where.since is None or task.created_at >= where.since)
        and (where.until is None or task.created_at < where.until)
        and (where.max_id is None or task.id <= where.max_id)
    )


def _has_error(task: Task, text: str) -> bool:
    wanted = text.lower()
    return any(wanted in f"{e.type}: {e.message}".lower() for e in task.errors)


def upper_bound(where: TaskFilter, before: int | None) -> int:
    """The id every task of the page is below: the cursor's, and the filter's ``max_id``
    (one bound, never NULL, so a prepared query keeps it an index condition)."""
    bound = 2**63 - 1 if before is None else before
    if where.max_id is not None:
        bound = min(bound, where.max_id + 1)
    return bound


def page_of(rows: Sequence[Task], limit: int) -> TaskPage:
    """The page of a query that fetched ``limit + 1`` rows: the extra one says there is more."""
    tasks = list(rows[:limit])
    more = len(rows) > limit and tasks
    return TaskPage(tasks=tasks, next=encode_cursor(tasks[-1].id) if more else None)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    """The id a cursor from :func:`encode_cursor` holds; BadListing for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raw = ""
    if not _CURSOR.fullmatch(raw):
        raise BadListing(
            "cursor",
            f"{_shown(text)!r} is not a cursor this gladd gave: pass the `next` of the previous "
            "page as it was, or leave it out for the first page",
        )
    return int(raw)


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "…"


def check_limit(text: str) -> int:
    """A page size from text: 1 to MAX_PAGE."""
    if not _LIMIT.fullmatch(text) or not 1 <= int(text) <= MAX_PAGE:
        raise BadListing(
            "limit",
            f"must be a whole number from 1 to {MAX_PAGE} (got {_shown(text)!r}); page on with the "
            "cursor for more",
        )
    return int(text)


def parse_states(values: Iterable[str]) -> frozenset[TaskState]:
    """States named one by one or comma-separated (``dead,cancelled``)."""
    states: set[TaskState] = set()
    for value in values:
        for name in value.split(","):
            if not name.strip():
                continue
            try:
                states.add(TaskState(name.strip().lower()))
            except ValueError:
                known = ", ".join(s.value for s in TaskState)
                raise BadListing("state", f"{name.strip()!r} is not a state: use {known}") from None
    return frozenset(states)


def parse_time(text: str, *, param: str, now: datetime) -> datetime:
    """An ISO 8601 time (with a zone; UTC when it has none) or a duration ago (``1h``)."""
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadListing(
            param,
            f"{_shown(text)!r} is neither a time nor a duration: use ISO 8601 like "
            "2026-12-04T18:00:00Z, or how long ago like 1h or 30m",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now.tzinfo)


def parse_filter(
    *,
    states: Iterable[str] = (),
    kind: str | None = None,
    error: str | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime,
) -> TaskFilter:
    """The filter the API's query parameters or the CLI's options describe."""
    if error is not None and len(error) > MAX_ERROR_TEXT:
        raise BadListing("error", f"at most {MAX_ERROR_TEXT} characters to search for")
    start = None if not since else parse_time(since, param="since", now=now)
    end = None if not until else parse_time(until, param="until", now=now)
    if start is not None and end is not None and start >= end:
        raise BadListing("until", "must be later than since")
    return TaskFilter(
        states=parse_states(states),
        kind=kind or None,
        error=error or None,
        since=start,
        until=end,
    )


# -- counts by state and kind -----------------------------------------------------------------


def stats_of(rows: Iterable[tuple[str, str, int]]) -> TaskStats:
    """Stats from (kind, state, n) rows, kinds in name order with every state, 0s included;
    rows that sum to 0 leave no kind behind."""
    sums: dict[str, dict[TaskState, int]] = {}
    for kind, state, n in rows:
        states = sums.setdefault(kind, dict.fromkeys(TaskState, 0))
        states[TaskState(state)] += int(n)
    return TaskStats(
        by_kind={k: sums[k] for k in sorted(sums) if any(sums[k].values())},
    )
