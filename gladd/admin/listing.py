"""What ``GET /tasks``, ``GET /tasks/stats`` and ``GET /workers`` read from a request and
answer (issue 14): pure functions, the routes are in :mod:`gladd.admin.tasks` and
:mod:`gladd.admin.overview`.

``GET /tasks`` takes ``state`` (repeated or comma-separated), ``kind``, ``error`` (text in an
error's ``type: message``, any case), ``since`` / ``until`` (ISO 8601 or how long ago: ``1h``),
``limit`` (1 to 1000) and ``cursor`` (the previous page's ``next``). A bad one is a 400 that
names it (:class:`~gladd.store.listing.BadListing`). Payload fields whose names look secret are
masked (:func:`~gladd.admin.masking.mask_secrets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gladd.admin.masking import mask_secrets
from gladd.executor.service import task_json
from gladd.store.base import TaskFilter, TaskPage, TaskStats, WorkerInfo
from gladd.store.listing import (
    DEFAULT_PAGE,
    BadListing,
    check_limit,
    decode_cursor,
    parse_filter,
)
from gladd.store.rules import text_problem

KNOWN = frozenset({"state", "kind", "error", "since", "until", "limit", "cursor"})


def page_request(
    query: Mapping[str, Sequence[str]], *, now: datetime
) -> tuple[TaskFilter, int, int | None]:
    """The filter, page size and cursor id a ``GET /tasks`` query asks for."""
    unknown = sorted(set(query) - KNOWN)
    if unknown:
        raise BadListing(
            unknown[0], f"not a parameter of GET /tasks (use {', '.join(sorted(KNOWN))})"
        )

    def one(name: str) -> str | None:
        values = query.get(name) or []
        if len(values) > 1:
            raise BadListing(name, "given more than once")
        return values[0] if values else None

    error = one("error")
    if error is not None and text_problem(error) is not None:
        raise BadListing("error", f"the text to search for {text_problem(error)}")
    where = parse_filter(
        states=query.get("state") or [],
        kind=one("kind"),
        error=error,
        since=one("since"),
        until=one("until"),
        now=now,
    )
    limit = check_limit(one("limit") or str(DEFAULT_PAGE))
    cursor = one("cursor")
    return where, limit, None if not cursor else decode_cursor(cursor)


def unmatchable(where: TaskFilter) -> bool:
    """A kind no stored task can have (PostgreSQL refuses even to compare a NUL)."""
    return where.kind is not None and text_problem(where.kind) is not None


def listed_json(task_json_: dict[str, Any]) -> dict[str, Any]:
    return {**task_json_, "payload": mask_secrets(task_json_["payload"])}


def page_json(page: TaskPage) -> dict[str, Any]:
    return {"tasks": [listed_json(task_json(t)) for t in page.tasks], "next": page.next}


def stats_json(stats: TaskStats) -> dict[str, Any]:
    """``{"kinds": {KIND: {STATE: n}}, "totals": {STATE: n}, "total": n}``."""
    totals = stats.totals
    return {
        "kinds": {
            k: {s.value: n for s, n in states.items()} for k, states in stats.by_kind.items()
        },
        "totals": {s.value: n for s, n in totals.items()},
        "total": sum(totals.values()),
    }


def workers_json(workers: Sequence[WorkerInfo], *, now: datetime) -> dict[str, Any]:
    return {
        "workers": [
            {
                "id": w.id,
                "last_seen": w.last_seen.isoformat(),
                "seen_ago": round((now - w.last_seen).total_seconds(), 3),
                "running": w.running,
            }
            for w in workers
        ]
    }


def filter_request(raw: object, *, now: datetime) -> TaskFilter:
    """The ``filter`` object of a bulk request: the keys of ``GET /tasks`` but the paging
    ones, each a string (``state`` may also be a list of strings)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadListing("filter", 'must be an object such as {"state": "dead"}')
    keys = KNOWN - {"limit", "cursor"}
    unknown = sorted(str(k) for k in set(raw) - keys)
    if unknown:
        raise BadListing(f"filter.{unknown[0]}", f"not a filter (use {', '.join(sorted(keys))})")
    states = raw.get("state") or []
    states = [states] if isinstance(states, str) else states
    fields = {k: raw.get(k) for k in ("kind", "error", "since", "until")}
    if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
        raise BadListing("filter.state", "must be a state or a list of states")
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise BadListing(f"filter.{name}", f"must be a string (got {value!r})")
    try:
        query = {k: [v] for k, v in fields.items() if v} | {"state": states}
        return page_request(query, now=now)[0]
    except BadListing as exc:
        raise BadListing(f"filter.{exc.param}", str(exc).split(": ", 1)[1]) from None
