"""The producer: claims tasks into free slots and starts an attempt for each.

It owns the claiming side of the executor: how many tasks may be claimed now
(:meth:`Producer.admit`), the claim itself, the idle waits between claims (woken by the
store, polling only as a fallback), and the drain when the node stops. Claiming stops at
:meth:`Producer.stop`; running handlers then get ``executor.shutdown_grace`` to finish and
are released (pending again, attempt refunded); :meth:`Producer.stop_now` skips the grace.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.executor.kinds import KindRegistry
from gladd.executor.ledger import Ledger, Running, StopReason
from gladd.policies import Policies
from gladd.resilience.clock import Clock
from gladd.store import Store, Task

CLAIM_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """What the next claim may take: up to ``limit`` tasks of ``kinds``."""

    limit: int
    kinds: Sequence[str]


@dataclass(slots=True, kw_only=True, eq=False)
class Producer:
    """``await producer.run()`` claims until :meth:`stop`, then drains and returns."""

    store: Store
    kinds: KindRegistry
    policies: Callable[[], Policies]
    worker_id: str
    ledger: Ledger
    attempt: Callable[[Running], Coroutine[Any, Any, None]]
    now: Callable[[], datetime]
    clock: Clock
    store_health: Callable[[StoreError | None], None]
    claimed: int = field(default=0, init=False)
    _stopping: anyio.Event = field(default_factory=anyio.Event, init=False)
    # None until first entered: a producer can be built outside an event loop (anyio makes
    # a cancel scope only inside one), as the daemon builds its runtime before it runs.
    _idle: anyio.CancelScope | None = field(default=None, init=False)
    _grace: anyio.CancelScope | None = field(default=None, init=False)
    _no_grace: bool = field(default=False, init=False)

    def admit(self, policies: Policies) -> Admission | None:
        """How many tasks, of which kinds, the next claim may take; None: none until a slot
        frees (or :meth:`wake`).

        The one place where limits and pauses belong. Today only this node's free slots
        (``executor.concurrency``) bound a claim; a per-kind limit narrows ``kinds`` or the
        count here, and a cluster-wide limit or a pause asks its source here, before the
        store is asked for anything.
        """
        free = policies.executor.concurrency - len(self.ledger.running)
        if free <= 0:
            return None
        return Admission(limit=min(free, CLAIM_BATCH), kinds=self.kinds.names())

    def wake(self) -> None:
        """Look again now: a reload may have raised the concurrency."""
        self.ledger.nudge()
        self._cancel(self._idle)

    def stop(self) -> None:
        """Stop claiming; running tasks finish within the grace, then are released."""
        self._stopping.set()
        self._cancel(self._idle)

    def stop_now(self) -> None:
        """Stop claiming and release the running tasks at once, without the grace."""
        self._no_grace = True
        self.stop()
        self._cancel(self._grace)
        self.ledger.stop_all(StopReason.SHUTDOWN)

    @staticmethod
    def _cancel(scope: anyio.CancelScope | None) -> None:
        if scope is not None:
            scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as handlers:
            task_status.started()
            await self._claim_loop(handlers)
            await self._drain()

    async def _claim_loop(self, handlers: TaskGroup) -> None:
        while not self._stopping.is_set():
            policies = self.policies()
            admission = self.admit(policies)
            if admission is None:
                await self._wait_for_slot()
                continue
            tasks = await self._claim(admission)
            if tasks is None:
                await self._idle_wait(policies.executor.poll_interval, store_wake=False)
                continue
            for task in tasks:
                handlers.start_soon(self.attempt, self.ledger.hold(task))
            if not tasks:
                await self._idle_wait(policies.executor.poll_interval, store_wake=True)

    async def _claim(self, admission: Admission) -> list[Task] | None:
        try:
            tasks = await self.store.claim(
                worker=self.worker_id,
                limit=admission.limit,
                now=self.now(),
                kinds=admission.kinds,
            )
        except StoreError as exc:
            self.store_health(exc)
            logger.debug("claiming tasks failed, will retry: {}", exc)
            return None
        self.store_health(None)
        self.claimed += len(tasks)
        return tasks

    async def _idle_wait(self, seconds: float, *, store_wake: bool) -> None:
        with anyio.CancelScope() as self._idle:
            if self._stopping.is_set():
                return
            if store_wake:
                try:
                    await self.store.wait_for_work(seconds)
                except StoreError as exc:
                    logger.warning("waiting for tasks failed: {}", exc)
                    await self.clock.sleep(seconds)
            else:
                await self.clock.sleep(seconds)

    async def _wait_for_slot(self) -> None:
        with anyio.CancelScope() as self._idle:
            if not self._stopping.is_set():
                await self.ledger.slot_freed()

    async def _drain(self) -> None:
        running = self.ledger.running
        grace = 0.0 if self._no_grace else self.policies().executor.shutdown_grace
        if running and grace:
            logger.info("waiting up to {:g}s for {} running task(s)", grace, len(running))
        with anyio.move_on_after(grace) as self._grace:
            while running:
                await self.ledger.slot_freed()
        self.ledger.stop_all(StopReason.SHUTDOWN)
        if running:
            logger.warning("grace over: releasing {} task(s) to pending", len(running))
