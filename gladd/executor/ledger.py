"""The tasks one worker holds, shared by the executor's services.

A claimed task is *held* from its claim until its outcome is stored: the producer adds it,
the attempt runs it (``running``) and frees its slot, the completer forgets it once the
store has its outcome, heartbeats report every held task and stop the ones to cancel. What
is still held when the executor ends is :attr:`Ledger.unwritten` — tasks to be rescued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import anyio
from loguru import logger

from gladd.store import Task


class StopReason(Enum):
    CANCEL = "cancel"  # an operator cancelled the task
    SHUTDOWN = "shutdown"  # the node is stopping: release without spending the attempt


@dataclass(slots=True)
class Running:
    """A task whose handler runs now, and the scope that stops it."""

    task: Task
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    reason: StopReason | None = None


class Ledger:
    __slots__ = ("_slot_freed", "on_ran", "running", "unwritten")

    def __init__(self) -> None:
        self.running: dict[int, Running] = {}
        self.unwritten: dict[int, int] = {}  # id → token of outcomes not yet stored
        self.on_ran: Callable[[Task], None] | None = None
        """Told of each task whose handler is done (the producer: a limit's slot freed)."""
        self._slot_freed = anyio.Event()

    def hold(self, task: Task) -> Running:
        """A task just claimed: it runs, and its outcome is owed to the store."""
        running = Running(task=task)
        self.running[task.id] = running
        self.unwritten[task.id] = task.token
        return running

    def ran(self, task_id: int) -> None:
        """The task's handler is done (its outcome is not stored yet): a slot is free."""
        ran = self.running.pop(task_id, None)
        self._slot_freed.set()
        if ran is not None and self.on_ran is not None:
            self.on_ran(ran.task)

    def written(self, task_id: int) -> None:
        """The store has the task's outcome (or refused it): the task is no longer ours."""
        self.unwritten.pop(task_id, None)

    def nudge(self) -> None:
        """Wake whoever waits for a slot, to look again (the concurrency may have changed)."""
        self._slot_freed.set()

    async def slot_freed(self) -> None:
        """Wait until a handler finishes (or :meth:`nudge`); a cancelled wait also resets."""
        try:
            await self._slot_freed.wait()
        finally:
            self._slot_freed = anyio.Event()

    def stop(self, task_id: int, reason: StopReason) -> None:
        """Cancel the task's handler, if it still runs; the first reason given wins."""
        running = self.running.get(task_id)
        if running is not None and running.reason is None:
            running.reason = reason
            running.scope.cancel()
            if reason is StopReason.CANCEL:
                logger.info("task {} ({}) cancelled by request", task_id, running.task.kind)

    def stop_all(self, reason: StopReason) -> None:
        for task_id in list(self.running):
            self.stop(task_id, reason)
