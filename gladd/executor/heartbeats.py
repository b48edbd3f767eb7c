"""Heartbeats: this worker tells the store it is alive and which tasks it still holds.

Every ``executor.heartbeat`` the store hears the (id, token) of each task held — running,
or finished with its outcome not yet written — so no other node rescues them; its answer
names the tasks an operator asked to cancel, and their handlers are stopped here. Leaving,
the worker deregisters, unless outcomes are still unwritten: then its tasks must be rescued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.executor.ledger import Ledger, StopReason
from gladd.policies import Policies
from gladd.resilience.clock import Clock
from gladd.store import Store


@dataclass(slots=True, kw_only=True, eq=False)
class Heartbeats:
    """``await tg.start(heartbeats.run)``: the first beat is sent before it counts as started."""

    store: Store
    policies: Callable[[], Policies]
    worker_id: str
    ledger: Ledger
    now: Callable[[], datetime]
    clock: Clock
    store_health: Callable[[StoreError | None], None]

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.beat()
        task_status.started()
        while True:
            await self.clock.sleep(self.policies().executor.heartbeat)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat, and the cancellations it brings back."""
        held = list(self.ledger.unwritten.items())
        try:
            cancel = await self.store.heartbeat(worker=self.worker_id, now=self.now(), running=held)
        except StoreError as exc:
            self.store_health(exc)
            logger.debug("heartbeat failed: {}", exc)
            return
        for task_id in cancel:
            self.ledger.stop(task_id, StopReason.CANCEL)

    async def leave(self) -> None:
        """Deregister the worker — unless some outcome could not be written."""
        if self.ledger.unwritten:
            logger.error(
                "{} task outcome(s) could not be written; those tasks will be rescued",
                len(self.ledger.unwritten),
            )
            return
        try:
            await self.store.forget_worker(self.worker_id)
        except StoreError as exc:
            logger.warning("could not deregister worker {}: {}", self.worker_id, exc)
