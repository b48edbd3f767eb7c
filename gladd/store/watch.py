"""Watches on tasks, as every store keeps them in its process (:meth:`Store.watch`).

A store hears of a change to a task in its own way — its own writes, NOTIFY on PostgreSQL,
the database file changing on SQLite — and passes it here: :meth:`Watchers.changed` wakes
the watches on those ids, :meth:`Watchers.changed_all` every watch (a change whose task is
not known, or one that may have been missed). Each watch is a sticky wake-up set up before
its reader looks at the task, so a change between that look and the wait is not lost.

:func:`check_progress` is the rule every store applies to a reported fraction.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from gladd.store.base import ProgressReport
from gladd.store.rules import Wakeup, text_problem

MAX_PROGRESS_MESSAGE = 1000
"""Characters of a progress message kept; a longer one is cut, with an ellipsis."""


@dataclass(eq=False, slots=True)
class _Watch:
    task_id: int
    wakeup: Wakeup = field(default_factory=Wakeup)

    async def changed(self, timeout: float) -> bool:
        return await self.wakeup.wait(timeout)


@dataclass(eq=False, slots=True)
class Watchers:
    """The watches of one store object, by task id."""

    _by_task: dict[int, list[_Watch]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(map(len, self._by_task.values()))

    @property
    def ids(self) -> set[int]:
        return set(self._by_task)

    @asynccontextmanager
    async def watch(self, task_id: int) -> AsyncIterator[_Watch]:
        watch = _Watch(task_id)
        self._by_task.setdefault(task_id, []).append(watch)
        try:
            yield watch
        finally:
            watches = self._by_task[task_id]
            watches.remove(watch)
            if not watches:
                del self._by_task[task_id]

    def changed(self, ids: Iterable[int]) -> None:
        for task_id in ids:
            for watch in self._by_task.get(task_id, ()):
                watch.wakeup.notify()

    def changed_all(self) -> None:
        for watches in self._by_task.values():
            for watch in watches:
                watch.wakeup.notify()


def check_progress(reports: Sequence[ProgressReport]) -> list[ProgressReport]:
    """``reports`` as stored: ValueError for a fraction that is not a number in 0..1 (the
    executor clamps a handler's before it gets here), a message cut to
    :data:`MAX_PROGRESS_MESSAGE` characters, text no store can keep refused."""
    checked = []
    for report in reports:
        fraction = report.fraction
        if not (isinstance(fraction, int | float) and math.isfinite(fraction)) or not (
            0.0 <= fraction <= 1.0
        ):
            raise ValueError(f"task {report.id}: progress must be in 0..1, got {fraction!r}")
        message = report.message
        if message is not None:
            if (problem := text_problem(message)) is not None:
                raise ValueError(f"task {report.id}: progress message {problem}")
            if len(message) > MAX_PROGRESS_MESSAGE:
                message = message[: MAX_PROGRESS_MESSAGE - 1] + "…"
        checked.append(
            ProgressReport(
                id=report.id,
                token=report.token,
                fraction=float(fraction),
                message=message,
                attempt=report.attempt,
            )
        )
    return checked
