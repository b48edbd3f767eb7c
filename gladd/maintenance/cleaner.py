"""The cleaner: finished tasks older than ``executor.retention`` are deleted, hourly, and
so are expired pauses and the token buckets of partitions idle for :data:`BUCKET_IDLE`.

The first purge comes one rescue interval after start (not during start-up), then one
every :data:`PURGE_EVERY` seconds; the retention is read afresh each time, so a reload
applies at the next purge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.maintenance.rescuer import rescue_interval
from gladd.policies import Policies
from gladd.resilience.clock import Clock
from gladd.store import Store

PURGE_EVERY = 3600.0
BUCKET_IDLE = 86400.0
"""Seconds after which an untouched token bucket is deleted: by then it is full again for
any rate above burst per day, and a missing bucket reads as full."""


@dataclass(slots=True, kw_only=True, eq=False)
class Cleaner:
    """``await tg.start(cleaner.run)``."""

    store: Store
    policies: Callable[[], Policies]
    now: Callable[[], datetime]
    clock: Clock

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.clock.sleep(rescue_interval(self.policies().executor.lease))
        while True:
            await self.purge(self.policies().executor.retention)
            await self.sweep()
            await self.clock.sleep(PURGE_EVERY)

    async def purge(self, retention: float) -> None:
        """Delete the tasks that finished more than ``retention`` seconds ago."""
        try:
            purged = await self.store.purge(
                finished_before=self.now() - timedelta(seconds=retention)
            )
        except StoreError as exc:
            logger.warning("purging finished tasks failed: {}", exc)
            return
        if purged:
            logger.info("purged {} finished task(s) older than the retention", purged)

    async def sweep(self) -> None:
        """Delete expired pauses and idle token buckets."""
        try:
            swept = await self.store.sweep_limits(now=self.now(), idle=BUCKET_IDLE)
        except StoreError as exc:
            logger.warning("sweeping expired pauses and idle rate buckets failed: {}", exc)
            return
        if swept:
            logger.debug("swept {} expired pause(s) and idle rate bucket(s)", swept)
