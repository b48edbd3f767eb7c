"""The producer's read of the breaker overrides: at once when the store announces a change,
else every OVERRIDES_BACKSTOP seconds; a failed read keeps the isolations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gladd.errors import StoreUnavailable
from gladd.executor.pauses import OVERRIDES_BACKSTOP, PauseCache
from gladd.resilience import FakeClock
from gladd.store.gates import BreakerOverride
from gladd.store.memory import MemoryStore

pytestmark = pytest.mark.anyio
NOW = datetime(2030, 1, 1, tzinfo=UTC)


class Flaky(MemoryStore):
    down = False

    async def breaker_overrides(self) -> list[BreakerOverride]:
        if self.down:
            raise StoreUnavailable("the database is down")
        return await super().breaker_overrides()


async def test_overrides_are_read_when_announced_and_on_the_backstop() -> None:
    store, clock = Flaky(), FakeClock()
    await store.open()
    told: list[list[str]] = []
    cache = PauseCache(
        store=store,
        now=lambda: NOW,
        clock=clock,
        on_breakers=lambda found: told.append([o.name for o in found]),
    )
    await cache.refresh(1.0)
    assert told == [[]]
    await store.isolate_breaker(BreakerOverride(name="api:billing", by="x", created_at=NOW))
    await cache.refresh(1.0)  # the epoch moved: read at once
    assert told[-1] == ["api:billing"]
    await cache.refresh(1.0)
    assert len(told) == 2  # nothing announced, backstop not due
    store.down = True
    clock.advance(OVERRIDES_BACKSTOP)
    await cache.refresh(1.0)
    assert len(told) == 2  # a failed read tells nothing: the isolation stays
    store.down = False
    await cache.refresh(1.0)
    assert told[-1] == ["api:billing"]
    await store.close()
