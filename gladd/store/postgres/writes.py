"""The PostgreSQL store's writes of more than one statement: an enqueue that looks again for
unique keys changing hands, and a schedule's advance with its tick's tasks. Each takes the
connection :class:`~gladd.store.postgres.store.PostgresStore` acquired."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gladd.errors import StoreError
from gladd.store.base import Enqueued, NewTask
from gladd.store.postgres.queries import Q
from gladd.store.postgres.rows import enqueue_args

ENQUEUE_ROUNDS = 3  # a holder of a unique_key may finish in between: go again, this often


async def enqueue_once(conn: Any, args: tuple[Any, ...]) -> dict[int, Enqueued]:
    """Enqueued per input index; an index is missing if its key's holder vanished."""
    keys: list[str | None] = args[-1]
    if len(keys) == 1:
        return await _enqueue_one(conn, (args[0], *(column[0] for column in args[1:])))
    if all(key is None for key in keys):  # nothing can conflict: no arbiter, no joins
        ids = await conn.fetchval(Q["enqueue_plain"], *args[:-1])
        return {i: Enqueued(id=task_id, created=True) for i, task_id in enumerate(ids)}
    found: dict[int, Enqueued] = {}
    for ord_, created, task_id in await conn.fetch(Q["enqueue"], *args):
        found.setdefault(ord_ - 1, Enqueued(id=task_id, created=created))
    # A conflicting task committed by another node after this statement's snapshot was
    # taken is invisible to it: look those up again, with a fresh snapshot.
    missing = [key for i, key in enumerate(keys) if i not in found]
    if missing:
        rows = await conn.fetch(Q["unfinished_by_keys"], missing)
        holders = {key: task_id for task_id, key in rows}
        for i, key in enumerate(keys):
            if i not in found and key in holders:
                found[i] = Enqueued(id=holders[key], created=False)
    return found


async def _enqueue_one(conn: Any, args: tuple[Any, ...]) -> dict[int, Enqueued]:
    """:func:`enqueue_once` of one task (``args`` its fields, not arrays): no arrays to
    unnest and no joins, for the commonest enqueue of all."""
    task_id = await conn.fetchval(Q["enqueue_one"], *args)
    if task_id is not None:
        return {0: Enqueued(id=task_id, created=True)}
    # A conflict: the holder committed before the insert looked (or while it waited for
    # it); this statement's fresh snapshot sees it, unless it has finished meanwhile.
    holder = await conn.fetchval(Q["unfinished_id_by_key"], args[-1])
    return {} if holder is None else {0: Enqueued(id=holder, created=False)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Advance:
    """A schedule's compare-and-set (``expected`` None: the schedule has no row yet)."""

    name: str
    spec: str
    expected: datetime | None
    to: datetime
    now: datetime


async def advance_schedule(
    conn: Any,
    advance: Advance,
    tasks: Sequence[NewTask],
    checked: Sequence[tuple[str, datetime]],
) -> list[Enqueued] | None:
    """Move the schedule's row from ``expected`` to ``to`` and enqueue ``tasks`` (checked by
    ``check_new_task``) in one transaction; None, having changed nothing, when the row is not
    at ``expected``. The enqueue's insert trigger notifies the workers at commit."""
    name, now = advance.name, advance.now
    async with conn.transaction():
        if advance.expected is None:
            moved = await conn.fetchrow(Q["schedule_insert"], name, advance.spec, advance.to, now)
        else:
            moved = await conn.fetchrow(
                Q["schedule_advance"], name, advance.spec, advance.to, now, advance.expected
            )
        if moved is None:
            return None
        enqueued = await _enqueue_all(conn, tasks, checked, now)
        if enqueued:
            await conn.execute(Q["schedule_fired"], name, enqueued[-1].id, now)
        return enqueued


async def enqueue_rounds(
    tasks: Sequence[NewTask],
    checked: Sequence[tuple[str, datetime]],
    now: datetime,
    round_: Callable[[tuple[Any, ...]], Awaitable[dict[int, Enqueued]]],
    failure: str,
) -> list[Enqueued]:
    """Every task enqueued, one :func:`enqueue_once` statement per ``round_``, again for
    those whose key's holder finished meanwhile; StoreError ``failure`` after
    :data:`ENQUEUE_ROUNDS` rounds."""
    done: dict[int, Enqueued] = {}
    todo = list(range(len(tasks)))
    for _ in range(ENQUEUE_ROUNDS):
        if not todo:
            break
        got = await round_(enqueue_args([tasks[i] for i in todo], [checked[i] for i in todo], now))
        done.update((todo[j], enqueued) for j, enqueued in got.items())
        todo = [i for j, i in enumerate(todo) if j not in got]
    if todo:
        raise StoreError(failure)
    return [done[i] for i in range(len(tasks))]


async def _enqueue_all(
    conn: Any, tasks: Sequence[NewTask], checked: Sequence[tuple[str, datetime]], now: datetime
) -> list[Enqueued]:
    """Every task enqueued on ``conn`` (inside the caller's transaction: each statement sees
    the others' latest commits, so a key's holder that finished meanwhile is seen next)."""

    async def round_(args: tuple[Any, ...]) -> dict[int, Enqueued]:
        return await enqueue_once(conn, args)

    failure = "advance_schedule: unique keys kept changing hands; try again"
    return await enqueue_rounds(tasks, checked, now, round_, failure)
