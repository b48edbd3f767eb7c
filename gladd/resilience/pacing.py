"""How long gladd waits before trying its own store again: the resilience engine's backoff,
jittered, so a fleet that lost its database does not come back in lockstep.

The schedule is the backoff of the ``database.retry`` policy (kind, base and max delay,
multiplier, jitter) read afresh at each failure, so a reload applies at once; without one,
:data:`STORE_BACKOFF`. Only the shape is taken: attempts and deadline do not apply, since
gladd never gives up on its own store — the daemon keeps trying to open it, the executor
keeps trying to write its outcomes (heartbeats keep the tasks its own meanwhile).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

from gladd.policies import Policies
from gladd.resilience.backoff import Backoff

STORE_BACKOFF = Backoff(kind="exponential", base=0.5, max=30.0, multiplier=2.0, jitter="full")
"""0.5 s doubling to 30 s, each delay drawn in [0, d]: when ``database.retry`` is unset."""


def store_backoff(policies: Policies) -> Backoff:
    """The delay schedule between tries at the store, from ``database.retry``."""
    name = policies.database.retry
    policy = policies.retry.get(name) if name is not None else None
    if policy is None:
        return STORE_BACKOFF
    return Backoff(
        kind=policy.backoff,
        base=policy.base_delay,
        max=policy.max_delay,
        multiplier=policy.multiplier,
        jitter=policy.jitter,
    )


def capped(backoff: Backoff, ceiling: float) -> Backoff:
    """``backoff`` with no delay longer than ``ceiling`` seconds."""
    if backoff.max <= ceiling:
        return backoff
    return dataclasses.replace(backoff, base=min(backoff.base, ceiling), max=ceiling)


@dataclass(slots=True)
class Pacer:
    """Consecutive failures of one repeated action, and the delay each one earns."""

    backoff: Callable[[], Backoff]
    rng: random.Random

    failures: int = 0
    previous: float = 0.0

    def next_delay(self) -> float:
        """Count a failure; the delay before the next try."""
        self.failures += 1
        self.previous = self.backoff().delay(self.failures, self.previous, self.rng)
        return self.previous

    def succeeded(self) -> None:
        """The action worked: the next failure starts the schedule over."""
        self.failures, self.previous = 0, 0.0
