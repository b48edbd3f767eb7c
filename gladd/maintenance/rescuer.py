"""The rescuer: tasks of workers not heard from for a lease go back to pending (or dead).

Every half lease (at least a second) the store is asked to rescue what dead workers held,
bumping the tokens so a late result from the old owner is discarded. The first rescue runs
at start, before this worker claims anything; on a single-process store (SQLite: only this
process uses the file) it takes back *every* running task, since whatever is still running
was left by a previous process, whatever its last heartbeat says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.policies import Policies
from gladd.resilience.clock import Clock
from gladd.store import Store


@dataclass(slots=True, kw_only=True, eq=False)
class Rescuer:
    """``await tg.start(rescuer.run)``: the start-up rescue is done before it counts as
    started."""

    store: Store
    policies: Callable[[], Policies]
    now: Callable[[], datetime]
    clock: Clock
    rescue_all_at_start: bool = False
    rescued: int = field(default=0, init=False)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        lease = 0.0 if self.rescue_all_at_start else self.policies().executor.lease
        await self.rescue(lease)
        task_status.started()
        while True:
            lease = self.policies().executor.lease
            await self.clock.sleep(rescue_interval(lease))
            await self.rescue(lease)

    async def rescue(self, lease: float) -> None:
        """One rescue of tasks whose worker was last heard from over ``lease`` seconds ago."""
        e = self.policies().executor
        try:
            report = await self.store.rescue(now=self.now(), lease=lease, max_rescues=e.max_rescues)
        except StoreError as exc:
            logger.warning("rescuing tasks of dead workers failed: {}", exc)
            return
        if report.to_pending or report.to_dead:
            self.rescued += len(report.to_pending) + len(report.to_dead)
            logger.warning(
                "rescued {} task(s) back to pending and {} to dead (rescue cap {}) from "
                "worker(s) presumed dead: {}",
                len(report.to_pending),
                len(report.to_dead),
                e.max_rescues,
                ", ".join(report.dead_workers) or "past their deadline",
            )


def rescue_interval(lease: float) -> float:
    """How often to look for dead workers' tasks: every half lease, at least every second."""
    return max(1.0, lease / 2)
