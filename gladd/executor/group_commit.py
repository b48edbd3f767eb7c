"""Group commit: enqueues that arrive together share one transaction.

Each enqueue through :class:`GroupCommit` joins a queue. When no write is in flight, the
caller becomes the writer at once and stores what the queue holds — its own task alone, if
it came alone (then without queueing at all), so a lone enqueue waits for nothing but its
own commit. Enqueues arriving while that write is in flight wait for it to end; then one of
them stores all of them in the next transaction (:meth:`~gladd.store.Store.enqueue_many`).
Under load, N concurrent callers cost about one commit per round instead of N, with no timer
and no added delay.

Nothing acknowledged is lost: a caller returns only once the transaction holding its task
has committed, and a write that fails fails every caller in it (none of their tasks was
stored, the transaction being one). A task the store refuses (:class:`~gladd.errors.TaskRejected`)
would refuse its whole group, so the group is then stored one task at a time and only that
caller gets the refusal. A caller cancelled while it waits leaves the queue; once its write
has begun, the write finishes for the others (it is shielded), and the caller's task may be
stored without its id being returned — as with any enqueue cut off during its commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import anyio

from gladd.errors import TaskRejected
from gladd.store import Enqueued, NewTask, Store


@dataclass(slots=True, eq=False)
class _Waiting:
    task: NewTask
    now: datetime
    done: bool = False  # a flag, not an Event: waiters wait on the write's one Event
    result: Enqueued | None = None
    error: BaseException | None = None


@dataclass(slots=True, kw_only=True, eq=False)
class GroupCommit:
    """``await group.enqueue(task, now=...)``, as ``store.enqueue``, grouped."""

    store: Store
    writes: int = field(default=0, init=False)
    """Transactions written so far (a test's and the bench's measure of the grouping)."""
    _queue: list[_Waiting] = field(default_factory=list, init=False)
    _writing: anyio.Event | None = field(default=None, init=False)  # set when the write ends

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued:
        if self._writing is None and not self._queue:
            return await self._alone(task, now)
        waiting = _Waiting(task, now)
        self._queue.append(waiting)
        try:
            while not waiting.done:
                if self._writing is None:
                    await self._write()
                else:
                    await self._writing.wait()
        except BaseException:
            if waiting in self._queue:  # not written yet: it never will be
                self._queue.remove(waiting)
            raise
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result

    async def _alone(self, task: NewTask, now: datetime) -> Enqueued:
        """A lone enqueue (nothing queued, nothing in flight) stores its task itself, with
        none of a group's hand-over; callers arriving meanwhile queue behind it as behind
        any write."""
        self._writing = writing = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # as _write: a begun commit is finished
                self.writes += 1
                enqueued = await self.store.enqueue(task, now=now)
        finally:
            self._writing = None
            writing.set()
        return enqueued

    async def _write(self) -> None:
        """Store everything queued, in one transaction; wake whoever waits."""
        self._writing = writing = anyio.Event()
        group, self._queue = self._queue, []
        try:
            # Shielded: the writer's own cancellation must not cut the others' commit.
            with anyio.CancelScope(shield=True):
                await self._store(group)
        finally:
            for waiting in group:
                waiting.done = True
            self._writing = None
            writing.set()

    async def _store(self, group: list[_Waiting]) -> None:
        self.writes += 1
        try:
            if len(group) == 1:
                results = [await self.store.enqueue(group[0].task, now=group[0].now)]
            else:
                now = max(w.now for w in group)
                results = await self.store.enqueue_many([w.task for w in group], now=now)
        except TaskRejected as exc:
            if len(group) > 1:  # which task? store them one by one: only its caller fails
                await self._one_by_one(group)
            else:
                group[0].error = exc
            return
        except Exception as exc:  # the transaction failed: no task of it was stored
            for waiting in group:
                waiting.error = exc
            return
        for waiting, result in zip(group, results, strict=True):
            waiting.result = result

    async def _one_by_one(self, group: list[_Waiting]) -> None:
        for waiting in group:
            self.writes += 1
            try:
                waiting.result = await self.store.enqueue(waiting.task, now=waiting.now)
            except Exception as exc:
                waiting.error = exc
