"""Two counters over a sliding time window, in fixed slices: O(1) to add, O(1) to read.

Used by the retry budget (calls, retries) and the ratio breaker (successes, failures).
The window slides in steps of ``window / BUCKETS``; time comes from a clock function.
"""

from __future__ import annotations

from collections.abc import Callable

BUCKETS = 10


class SlidingPair:
    """Counts of two kinds of thing, ``a`` and ``b``, seen in the last ``window`` seconds."""

    __slots__ = ("_a", "_b", "_epoch", "_inv_width", "_now", "a", "b")

    def __init__(self, window: float, now: Callable[[], float]) -> None:
        self._now = now
        self._inv_width = BUCKETS / window
        self._a = [0] * BUCKETS
        self._b = [0] * BUCKETS
        self.a = 0
        """Total of ``a`` in the window (call :meth:`slide` first for an exact figure)."""
        self.b = 0
        self._epoch = int(now() * self._inv_width)

    def slide(self) -> int:
        """Drop the slices that left the window; the current slice index."""
        epoch = int(self._now() * self._inv_width)
        if epoch == self._epoch:
            return epoch % BUCKETS
        steps = epoch - self._epoch
        if steps >= BUCKETS or steps < 0:
            self._a = [0] * BUCKETS
            self._b = [0] * BUCKETS
            self.a = self.b = 0
        else:
            a, b = self._a, self._b
            for i in range(self._epoch + 1, epoch + 1):
                slot = i % BUCKETS
                self.a -= a[slot]
                self.b -= b[slot]
                a[slot] = b[slot] = 0
        self._epoch = epoch
        return epoch % BUCKETS

    def add_a(self, n: int = 1) -> None:
        self._a[self.slide()] += n
        self.a += n

    def add_b(self, n: int = 1) -> None:
        self._b[self.slide()] += n
        self.b += n

    def clear(self) -> None:
        self._a = [0] * BUCKETS
        self._b = [0] * BUCKETS
        self.a = self.b = 0

    def resize(self, window: float) -> None:
        """Take a new window length, keeping every count (in the current slice)."""
        self.slide()
        a, b = self.a, self.b
        self._inv_width = BUCKETS / window
        self._epoch = int(self._now() * self._inv_width)
        self.clear()
        self._a[self._epoch % BUCKETS] = self.a = a
        self._b[self._epoch % BUCKETS] = self.b = b
