"""This node's throughput over the last hour: a per-minute ring of the executor's counts.

The executor counts since it started (:class:`~gladd.executor.statistics.ExecutorStatistics`);
the ring keeps, per wall-clock minute, the last totals seen in it, so a minute's work is its
totals less those of the minute before. Node-local and in memory (the console's overview
chart says "this node"): a restart starts an empty hour. Sampled every few seconds by
:meth:`ThroughputRing.run`, and again whenever it is read, so the current minute is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import anyio
from anyio.abc import TaskStatus

from gladd.executor.statistics import ExecutorStatistics

MINUTES = 60
SAMPLE_EVERY = 5.0
"""Seconds between samples: several per minute, so no minute goes unseen."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Minute:
    """One minute's work on this node: attempts that succeeded, and that failed."""

    start: datetime
    succeeded: int
    failed: int


def _minute(now: datetime) -> int:
    return int(now.timestamp() // 60)


class ThroughputRing:
    """The last :data:`MINUTES` minutes of ``read()``'s succeeded and failed counts."""

    def __init__(self, read: Callable[[], ExecutorStatistics], *, minutes: int = MINUTES) -> None:
        self._read = read
        self._minutes = minutes
        self._totals: dict[int, tuple[int, int]] = {}  # minute → last (succeeded, failed)
        self._before = (0, 0)  # the totals before the oldest minute kept

    def sample(self, now: datetime) -> None:
        """Record the counts as they stand at ``now``."""
        stats = self._read()
        self._totals[_minute(now)] = (stats.succeeded, stats.failed)
        oldest = _minute(now) - self._minutes
        for minute in sorted(m for m in self._totals if m <= oldest):
            self._before = self._totals.pop(minute)

    def minutes(self, now: datetime) -> list[Minute]:
        """The last hour up to ``now``'s minute, oldest first, a minute without samples
        at zero."""
        self.sample(now)
        last = _minute(now)
        previous = self._before
        shown = []
        for minute in range(last - self._minutes + 1, last + 1):
            totals = self._totals.get(minute)
            done = (0, 0)
            if totals is not None:
                done = (totals[0] - previous[0], totals[1] - previous[1])
                previous = totals
            start = datetime.fromtimestamp(minute * 60, UTC)
            shown.append(Minute(start=start, succeeded=max(done[0], 0), failed=max(done[1], 0)))
        return shown

    async def run(
        self,
        now: Callable[[], datetime],
        *,
        every: float = SAMPLE_EVERY,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Sample every ``every`` seconds, until cancelled."""
        task_status.started()
        while True:
            self.sample(now())
            await anyio.sleep(every)


def minute_label(start: datetime, now: datetime) -> str:
    """``"12 min ago"`` for a minute starting at ``start``."""
    ago = (now.replace(second=0, microsecond=0) - start) // timedelta(minutes=1)
    return "this minute" if ago <= 0 else f"{ago} min ago"
