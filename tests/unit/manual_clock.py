"""A clock for testing the executor's services exactly: time moves only when a test says.

Unlike :class:`gladd.resilience.clock.FakeClock`, whose ``sleep`` returns at once, a sleep
here ends only once :meth:`ManualClock.advance` has moved time past it — so a service's
loop can be stepped one period at a time, and nothing waits on the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._start = start
        self._now = start
        self._sleepers: list[tuple[float, anyio.Event]] = []
        self.slept: list[float] = []
        """Every duration passed to :meth:`sleep`, in order."""

    def monotonic(self) -> float:
        return self._now

    def now(self) -> datetime:
        """The wall clock, moving with this one: :data:`EPOCH` at the start."""
        return EPOCH + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        woken = anyio.Event()
        self._sleepers.append((self._now + seconds, woken))
        await woken.wait()

    async def advance(self, seconds: float) -> None:
        """Move time on, wake the sleeps now due, and wait until every task is blocked."""
        self._now += seconds
        due = [s for s in self._sleepers if s[0] <= self._now]
        self._sleepers = [s for s in self._sleepers if s[0] > self._now]
        for _, woken in due:
            woken.set()
        await anyio.wait_all_tasks_blocked()
