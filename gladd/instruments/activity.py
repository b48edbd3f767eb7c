"""What each asyncio task of the loop is doing, so a blocked loop can be blamed by name.

The executor wraps each handler call::

    return await activities.track("task", kind.name, kind.handler(ctx, payload))

and the lag monitor's watcher thread, seeing the loop stalled, asks which asyncio task the
loop is running right now and looks it up here. Entering and leaving cost one dict write
each; nothing is read on the hot path.

One registry serves the process (:data:`activities`): it is keyed by asyncio task, so
loops in different threads (tests) cannot see each other's entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Activity:
    """One thing being done: ``what`` is ``task`` or ``plugin``; ``name`` the task kind or
    the plugin's name; ``detail`` anything that narrows it down (a task id)."""

    what: str
    name: str
    detail: str = ""

    def describe(self) -> str:
        text = f"{self.what} {self.name}"
        return f"{text} ({self.detail})" if self.detail else text


class Activities:
    """asyncio task → what it is doing (the innermost activity wins while it runs)."""

    __slots__ = ("_by_task",)

    def __init__(self) -> None:
        self._by_task: dict[asyncio.Task[object], Activity] = {}

    @contextmanager
    def running(self, what: str, name: str, detail: str = "") -> Iterator[None]:
        """Mark the current asyncio task as doing ``what name`` for the ``with`` block."""
        task = _current_task()
        if task is None:  # not in an asyncio task (another backend, or a thread): no-op
            yield
            return
        outer = self._by_task.get(task)
        self._by_task[task] = Activity(what=what, name=name, detail=detail)
        try:
            yield
        finally:
            if outer is None:
                self._by_task.pop(task, None)
            else:
                self._by_task[task] = outer

    async def track(self, what: str, name: str, awaitable: Awaitable[T], detail: str = "") -> T:
        """``await awaitable`` marked as ``what name``: the one-line form of :meth:`running`."""
        with self.running(what, name, detail):
            return await awaitable

    def of(self, task: asyncio.Task[object] | None) -> Activity | None:
        """What ``task`` is doing; safe to call from another thread."""
        if task is None:
            return None
        return self._by_task.get(task)

    def now(self) -> list[Activity]:
        """Everything in progress, for when the culprit itself could not be caught."""
        return list(self._by_task.copy().values())


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


activities = Activities()
"""The process's registry: the executor writes it, the lag monitor reads it."""
