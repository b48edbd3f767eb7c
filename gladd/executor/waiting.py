"""Waiting for a task to finish: what ``Client.wait`` and ``gladd tasks wait`` do.

The store's watch (:meth:`~gladd.store.base.Store.watch`) wakes the waiter when the task
changes — NOTIFY on PostgreSQL, the database file changing on SQLite, the store's own
writes in memory — and the waiter reads the task again; it is set up before the first
read, so a task finishing in between is not missed. A safety re-read every
:data:`WAIT_RECHECK` seconds covers what no watch hears (a plain SQL update, a listening
connection being re-established).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio

from gladd.durations import seconds_or_duration
from gladd.errors import UnknownTask, WaitTimeout
from gladd.store import Store, Task

WAIT_RECHECK = 5.0
"""Seconds between safety re-reads of a watched task."""


def wait_seconds(timeout: float | str | None) -> float | None:
    """A wait's ``timeout`` as seconds (None: for as long as it takes); ValueError naming
    what is wrong. 0 looks once."""
    if timeout is None:
        return None
    try:
        seconds = seconds_or_duration(timeout)
    except ValueError as exc:
        raise ValueError(f"timeout: {exc}") from None
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f'timeout must be 0 or more seconds, like 30 or "30s" (got {timeout!r})')
    return seconds


def _reading(task: Task) -> tuple[object, ...]:
    return (task.state, task.attempt, task.progress, len(task.errors))


async def wait_finished(
    store: Store,
    task_id: int,
    *,
    timeout: float | None,
    on_change: Callable[[Task], object] | None = None,
    recheck: float = WAIT_RECHECK,
) -> Task:
    """The task once finished (succeeded, dead or cancelled). ``on_change`` hears each
    reading of it unfinished that differs from the one before (the first included): a
    new attempt, progress, an error. Raises UnknownTask when there is no such task (or it
    was purged meanwhile), WaitTimeout after ``timeout`` seconds."""
    deadline = None if timeout is None else anyio.current_time() + timeout
    async with store.watch(task_id) as watch:
        seen: tuple[object, ...] | None = None
        while True:
            task = await store.get(task_id)
            if task is None:
                raise UnknownTask(f"no task with id {task_id}")
            if task.state.finished:
                return task
            if on_change is not None and _reading(task) != seen:
                on_change(task)
            seen = _reading(task)
            left = recheck
            if deadline is not None:
                left = min(left, deadline - anyio.current_time())
                if left <= 0:
                    assert timeout is not None
                    raise WaitTimeout(task, timeout)
            await watch.changed(left)
