"""The tasks screens' filters and keyset pages, as URLs (issue 14): pure functions.

A list screen's URL carries the filter ``GET /tasks`` takes (``state`` repeated, ``kind``,
``error``, ``since``, ``until``) and the page's ``cursor``; ``trail`` is the cursors of the
pages before it (comma-separated), so a "newer" link can go back one page although the store
pages newest first only. Filters, cursor and page size are read by the API's own
:func:`~gladd.admin.listing.page_request`, so a bad one is the same message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

from gladd.admin.audit import describe_ids
from gladd.admin.listing import page_request
from gladd.store.base import TaskFilter
from gladd.store.listing import decode_cursor

FILTER_KEYS = ("state", "kind", "error", "since", "until")
MAX_TRAIL = 50
"""Pages a "newer" link can walk back; further back, it goes to the newest page."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PageAsk:
    """What a list screen's URL asks for."""

    where: TaskFilter
    before: int | None
    cursor: str  # "" for the first page
    trail: tuple[str, ...]  # the cursors of the pages before this one, oldest first
    filters: tuple[tuple[str, str], ...]  # the filter fields as given, for links


def filters_of(query: Mapping[str, Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """The non-empty filter fields of a query, in a fixed order (``state`` may repeat)."""
    return tuple((k, v) for k in FILTER_KEYS for v in query.get(k, []) if v.strip())


def read_page(query: Mapping[str, Sequence[str]], *, limit: int, now: datetime) -> PageAsk:
    """The filter and page a list screen's query asks for; BadListing naming a bad field."""
    filters = filters_of(query)
    asked: dict[str, list[str]] = {}
    for key, value in filters:
        asked.setdefault(key, []).append(value)
    cursor = (query.get("cursor") or [""])[0]
    where, _, before = page_request({**asked, "limit": [str(limit)], "cursor": [cursor]}, now=now)
    trail = tuple(c for c in (query.get("trail") or [""])[0].split(",") if c)
    for step in trail:
        decode_cursor(step)  # BadListing("cursor", ...) for a trail this console did not make
    return PageAsk(where=where, before=before, cursor=cursor, trail=trail, filters=filters)


def link(path: str, fields: Sequence[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(fields)}" if fields else path


def next_link(path: str, ask: PageAsk, next_cursor: str | None) -> str | None:
    """The page after this one, its trail one longer; None on the last page."""
    if next_cursor is None:
        return None
    trail = (*ask.trail, ask.cursor) if ask.cursor else ask.trail
    fields = [*ask.filters, ("cursor", next_cursor)]
    if trail:
        fields.append(("trail", ",".join(trail[-MAX_TRAIL:])))
    return link(path, fields)


def newer_link(path: str, ask: PageAsk) -> str | None:
    """The page before this one; None on the first page."""
    if not ask.cursor:
        return None
    if not ask.trail:
        return link(path, ask.filters)
    fields = [*ask.filters, ("cursor", ask.trail[-1])]
    if len(ask.trail) > 1:
        fields.append(("trail", ",".join(ask.trail[:-1])))
    return link(path, fields)


def described(changed: Sequence[int], skipped: int) -> str:
    """A bulk action's tasks for its log line."""
    return describe_ids(changed) + (f" ({skipped} skipped)" if skipped else "")


def with_done(back: str, said: str) -> str:
    """``back`` saying what was done (``done=``, in place of one it carried already)."""
    parts = urlsplit(back)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "done"]
    return link(parts.path, [*kept, ("done", said)])
