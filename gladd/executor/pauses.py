"""The pauses a producer claims under: the store's, re-read only when they may have changed.

The store moves its :attr:`~gladd.store.Store.pause_epoch` whenever pauses may have changed
(a write here, another node's NOTIFY, another process's doorbell); the cache re-reads then,
and at least every ``executor.poll_interval`` as the fallback for an announcement missed.
A read that fails keeps the pauses last read: a brake is not released by a flaky store.

The breakers operators isolated (:meth:`~gladd.store.Store.breaker_overrides`) are announced
the same way, and re-read with the pauses when the epoch moved, else every
:data:`OVERRIDES_BACKSTOP` seconds; ``on_breakers`` is told them after each read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from loguru import logger

from gladd.errors import StoreError
from gladd.resilience.clock import Clock
from gladd.store import Store
from gladd.store.gates import BreakerOverride, Pause

OVERRIDES_BACKSTOP = 5.0
"""Seconds between re-reads of the breaker overrides when nothing announced a change."""

OnBreakers = Callable[[list[BreakerOverride]], None]
"""Told the breaker overrides after each read of them (the runtime isolates those)."""

OnPauses = Callable[[list[Pause]], None]
"""Told the pauses after each read that changed them (the runtime feeds cooldowns on)."""


@dataclass(slots=True, kw_only=True, eq=False)
class PauseCache:
    store: Store
    now: Callable[[], datetime]
    clock: Clock
    on_change: OnPauses | None = None
    on_breakers: OnBreakers | None = None
    pauses: list[Pause] = field(default_factory=list, init=False)
    _overrides_epoch: int | None = field(default=None, init=False)
    _overrides_at: float = field(default=-math.inf, init=False)
    _epoch: int | None = field(default=None, init=False)
    _read_at: float = field(default=-math.inf, init=False)

    async def refresh(self, every: float) -> list[Pause]:
        """The active pauses: re-read when the store's epoch moved or ``every`` passed."""
        epoch = self.store.pause_epoch  # before the read: a change during it reads again
        if self.on_breakers is not None:
            await self._read_overrides(epoch, self.on_breakers)
        if epoch == self._epoch and self.clock.monotonic() - self._read_at < every:
            return self.pauses
        try:
            pauses = await self.store.pauses(now=self.now())
        except StoreError as exc:
            logger.debug("reading pauses failed, keeping the last ones read: {}", exc)
            return self.pauses
        self._epoch, self._read_at = epoch, self.clock.monotonic()
        if pauses != self.pauses:
            self.pauses = pauses
            if self.on_change is not None:
                self.on_change(pauses)
        return self.pauses

    async def _read_overrides(self, epoch: int, tell: OnBreakers) -> None:
        stale = self.clock.monotonic() - self._overrides_at >= OVERRIDES_BACKSTOP
        if epoch == self._overrides_epoch and not stale:
            return
        try:
            overrides = await self.store.breaker_overrides()
        except StoreError as exc:
            logger.debug("reading breaker overrides failed, keeping the last ones: {}", exc)
            return
        self._overrides_epoch, self._overrides_at = epoch, self.clock.monotonic()
        tell(overrides)
