"""A bulkhead: at most ``limit`` requests to one service in flight from this node.

Built on :class:`anyio.CapacityLimiter`, each slot borrowed on behalf of its own token (not
the task), so one task may hold several — a streamed response still open while it sends
the next request — and any task may release a slot, e.g. the one closing a stream.

The limit can change while requests are in flight (a reload): raising it admits waiters at
once; lowering it drops nobody, new requests wait until enough slots have come back.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio


class Slot:
    """One admitted request's place, given back exactly once.

    The guard calls :meth:`done` after the attempt; a transport that hands the response's
    body to the caller still streaming takes the slot with :meth:`hand_over`, and releases
    it when the body is closed.
    """

    __slots__ = ("_release", "handed_over")

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self.handed_over = False

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def done(self) -> None:
        """The attempt is over: give the slot back unless it was handed over."""
        if not self.handed_over:
            self.release()

    def hand_over(self) -> Callable[[], None]:
        """Keep the slot past the attempt; the callable returned gives it back."""
        self.handed_over = True
        return self.release


def _free() -> None:
    pass


FREE = Slot(_free)
"""The slot of a service without a bulkhead (its rate, if any, still applies)."""


class Bulkhead:
    """At most ``limit`` slots out at once (None: no limit)."""

    __slots__ = ("_limit", "_limiter")

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._limiter: anyio.CapacityLimiter | None = None  # built in the loop, when needed

    @property
    def limit(self) -> int | None:
        return self._limit

    @property
    def in_flight(self) -> int:
        """Slots out now."""
        return 0 if self._limiter is None else self._limiter.borrowed_tokens

    @property
    def waiting(self) -> int:
        return 0 if self._limiter is None else self._limiter.statistics().tasks_waiting

    def resize(self, limit: int | None) -> None:
        """Take a new limit live; slots out stay out."""
        self._limit = limit
        if self._limiter is not None:
            self._limiter.total_tokens = math.inf if limit is None else limit

    async def acquire(self, max_wait: float) -> Slot | None:
        """A slot, waiting at most ``max_wait`` seconds for one; None if none came."""
        limiter = self._limiter
        if limiter is None:
            if self._limit is None:
                return FREE
            limiter = self._limiter = anyio.CapacityLimiter(self._limit)
        borrower = object()
        try:
            limiter.acquire_on_behalf_of_nowait(borrower)  # the common case: no suspension
        except anyio.WouldBlock:
            got = False
            with anyio.move_on_after(max_wait):
                await limiter.acquire_on_behalf_of(borrower)  # given back if cancelled
                got = True
            if not got:
                return None
        return Slot(lambda: limiter.release_on_behalf_of(borrower))
