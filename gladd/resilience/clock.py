"""Time for the resilience core: read through a :class:`Clock`, never from ``time`` directly.

The pure decisions (backoff, breaker, budget) take ``now`` from a clock so tests drive them
with a :class:`FakeClock` and never sleep. The async guard also *sleeps* through the clock,
so a guard built on a fake clock retries instantly while its decisions see time pass.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds, and a way to wait for some of them to pass."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`anyio.sleep`."""

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it and yields once."""

    __slots__ = ("_now", "slept")

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.slept: list[float] = []
        """Every duration passed to :meth:`sleep`, in order (for assertions)."""

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (got {seconds})")
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(max(seconds, 0.0))
        await anyio.lowlevel.checkpoint()


SYSTEM_CLOCK = SystemClock()
