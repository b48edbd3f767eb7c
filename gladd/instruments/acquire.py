"""How long callers wait for a pooled connection: cumulative, so every reader takes deltas.

Kept free of imports from the rest of gladd (a bottom layer): the PostgreSQL store uses it on
every query.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AcquireMeter:
    """``ticket = meter.begin()`` before ``pool.acquire()``, ``meter.end(ticket)`` after
    (whether it succeeded or not). Callers still waiting are visible too, so a pool that
    hands out nothing at all shows a wait that grows rather than none."""

    __slots__ = ("_clock", "_next", "_waiting", "acquisitions", "total_wait")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next = 0
        self._waiting: dict[int, float] = {}  # ticket → when its wait began
        self.acquisitions = 0
        self.total_wait = 0.0

    def begin(self) -> int:
        self._next += 1
        self._waiting[self._next] = self._clock()
        return self._next

    def end(self, ticket: int) -> None:
        began = self._waiting.pop(ticket, None)
        if began is not None:
            self.acquisitions += 1
            self.total_wait += self._clock() - began

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def longest_wait(self) -> float:
        """Seconds the longest-waiting caller has waited so far (0 when none waits)."""
        if not self._waiting:
            return 0.0
        return max(0.0, self._clock() - min(self._waiting.values()))
