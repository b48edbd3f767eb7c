"""Retry or cancel every task matching a filter (issue 14), shared by ``POST /tasks/bulk``
and ``gladd tasks retry|cancel --all``.

An operator first sees how many tasks it would touch (:func:`preview`), then confirms with
that count (:func:`run`). The set is fixed when the action starts: the tasks matching then,
up to the highest id matching then — a task that matches later (a newly dead one) is left
for the next action. Before acting, the count is taken again: more tasks than the operator
agreed to is refused (:class:`BulkCountChanged`, HTTP 409) — they would be acting on tasks
they were not shown; fewer (some retried or finished meanwhile) goes ahead.

It works in chunks of :data:`CHUNK` ids, each chunk changed in one statement and
transaction by the store's ``retry_many`` / ``cancel_many``: no lock held on the table for
long, a 100,000-task retry a few hundred statements (bench/bench_bulk.py), and every rule of
the single action (unique keys, a running task's cancel asked of its worker, the timeline's
entry saying who) holds. A task that no longer qualifies when its chunk comes (it
finished, another task holds its unique key) is skipped and counted as such.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from gladd.errors import GladdError, TaskStateConflict
from gladd.store import Store, TaskState
from gladd.store.base import BULK_CHUNK, TaskFilter, TaskStats
from gladd.store.listing import BadListing

CHUNK = BULK_CHUNK


class BulkAction(StrEnum):
    RETRY = "retry"  # dead or cancelled → pending, with a fresh allowance of attempts
    CANCEL = "cancel"  # pending → cancelled; running: its worker is asked to stop

    @property
    def acts_on(self) -> frozenset[TaskState]:
        if self is BulkAction.RETRY:
            return frozenset({TaskState.DEAD, TaskState.CANCELLED})
        return frozenset({TaskState.PENDING, TaskState.RUNNING})


class BulkCountChanged(TaskStateConflict):
    """More tasks match than the operator agreed to act on; nothing was changed (HTTP 409,
    exit 1, as any conflict)."""

    def __init__(self, count: int, expect: int) -> None:
        self.count = count
        self.expect = expect
        GladdError.__init__(
            self,
            f"{count} tasks match now, more than the {expect} expected: preview again and "
            "confirm the new count",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkResult:
    changed: list[int]  # the ids acted on, newest first
    skipped: int  # matched at the start but no longer qualified at their turn


def parse_action(text: object) -> BulkAction:
    try:
        return BulkAction(str(text))
    except ValueError:
        raise BadListing("action", f"{text!r} is not an action: use retry or cancel") from None


def narrowed(action: BulkAction, where: TaskFilter) -> TaskFilter:
    """``where`` restricted to the states ``action`` applies to; BadListing when none is left."""
    states = action.acts_on & where.states if where.states else action.acts_on
    if not states:
        named = ", ".join(sorted(s.value for s in action.acts_on))
        raise BadListing("filter.state", f"{action.value} acts on {named} tasks only")
    return replace(where, states=frozenset(states))


async def preview(store: Store, action: BulkAction, where: TaskFilter) -> int:
    """How many tasks :func:`run` would act on now: from the counts the store keeps when
    the filter is by state and kind only (a count of a million rows is most of 100 ms,
    bench/bench_console.py), else counted."""
    where = narrowed(action, where)
    if by_stats(where):
        return counted_by_stats(await store.stats(), where)
    return await store.count_matching(where)


def by_stats(where: TaskFilter) -> bool:
    """Whether the counts by state and kind answer how many tasks match ``where``."""
    return (
        where.error is None
        and where.since is None
        and where.until is None
        and (where.max_id is None)
    )


def counted_by_stats(stats: TaskStats, where: TaskFilter) -> int:
    """How many tasks of ``where``'s kind (any kind: None) and states (any: empty) the
    counts hold; exact when :func:`by_stats`, an upper bound otherwise."""
    kinds = [where.kind] if where.kind is not None else list(stats.by_kind)
    states = where.states or frozenset(TaskState)
    return sum(stats.by_kind.get(k, {}).get(s, 0) for k in kinds for s in states)


async def run(
    store: Store,
    action: BulkAction,
    where: TaskFilter,
    *,
    expect: int,
    now: datetime,
    by: str | None = None,
) -> BulkResult:
    """Act on the tasks matching now, chunk by chunk (each task's timeline saying ``by``);
    BulkCountChanged (nothing changed) when more than ``expect`` match."""
    where = narrowed(action, where)
    top = await store.find(where, limit=1)
    if not top.tasks:
        return BulkResult(changed=[], skipped=0)
    fixed = replace(where, max_id=top.tasks[0].id)
    count = await store.count_matching(fixed)
    if count > expect:
        raise BulkCountChanged(count, expect)
    act = store.retry_many if action is BulkAction.RETRY else store.cancel_many
    changed: list[int] = []
    skipped = 0
    before: int | None = None
    while True:
        ids = await store.find_ids(fixed, limit=CHUNK, before=before)
        done = await act(ids, now=now, by=by)
        changed.extend(done.changed)
        skipped += len(done.skipped)
        if len(ids) < CHUNK:
            return BulkResult(changed=changed, skipped=skipped)
        before = ids[-1]
