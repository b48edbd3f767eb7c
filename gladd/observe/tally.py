"""A resilience sink counting events per (policy, service), for ``/metrics``.

Like :class:`gladd.resilience.Counters`, but keyed by the target too (``service`` in the
metrics: an HTTP service, ``database``, or a task kind with a breaker of its own), so two
services sharing a retry policy stay apart. Each event bumps a few integers, no await.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

from gladd.resilience.events import (
    BreakerStateChanged,
    BudgetExhausted,
    CallRejected,
    CallSucceeded,
    Event,
    FallbackMissed,
    FallbackServed,
    GaveUp,
    RetryScheduled,
    TimedOut,
)


@dataclass(slots=True)
class Tally:
    """The counts of one (policy, service)."""

    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    retries: int = 0
    retried_succeeded: int = 0
    retried_failed: int = 0
    budget_exhausted: int = 0
    attempt_timeouts: int = 0
    total_timeouts: int = 0
    fallback_static: int = 0
    fallback_cache_hits: int = 0
    fallback_cache_misses: int = 0

    @property
    def calls(self) -> int:
        return self.succeeded + self.failed + self.rejected

    @property
    def attempts(self) -> int:
        """Attempts made: each call's first (unless rejected), plus each retry."""
        return self.succeeded + self.failed + self.retries

    @property
    def retry_success_ratio(self) -> float | None:
        retried = self.retried_succeeded + self.retried_failed
        return self.retried_succeeded / retried if retried else None

    @property
    def cache_hit_ratio(self) -> float | None:
        lookups = self.fallback_cache_hits + self.fallback_cache_misses
        return self.fallback_cache_hits / lookups if lookups else None

    @property
    def timeout_ratio(self) -> float | None:
        attempts = self.attempts
        return (self.attempt_timeouts + self.total_timeouts) / attempts if attempts else None

    def copy(self) -> Tally:
        return Tally(**{f.name: getattr(self, f.name) for f in fields(self)})


Key = tuple[str, str]
"""(policy, service)."""


class EventTally:
    """The sink: ``Resilience(policies, sinks=[..., tally])``; read with :meth:`snapshot`."""

    wants = frozenset(
        {
            CallSucceeded,
            GaveUp,
            RetryScheduled,
            BudgetExhausted,
            TimedOut,
            BreakerStateChanged,
            CallRejected,
            FallbackServed,
            FallbackMissed,
        }
    )

    __slots__ = ("_by_key", "transitions")

    def __init__(self) -> None:
        self._by_key: dict[Key, Tally] = {}
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        """Breaker transitions by (breaker, service, new state)."""

    def _tally(self, event: Event) -> Tally:
        key = (event.policy, event.target)
        tally = self._by_key.get(key)
        if tally is None:
            tally = self._by_key[key] = Tally()
        return tally

    def __call__(self, event: Event, /) -> None:
        if type(event) is CallSucceeded:  # the hot one first
            tally = self._tally(event)
            tally.succeeded += 1
            if event.attempts > 1:
                tally.retried_succeeded += 1
        elif isinstance(event, GaveUp):
            tally = self._tally(event)
            tally.failed += 1
            if event.attempts > 1:
                tally.retried_failed += 1
        elif isinstance(event, BreakerStateChanged):
            self.transitions[event.policy, event.target, event.new.value] += 1
        else:
            self._rare(self._tally(event), event)

    @staticmethod
    def _rare(tally: Tally, event: Event) -> None:
        if isinstance(event, RetryScheduled):
            tally.retries += 1
        elif isinstance(event, BudgetExhausted):
            tally.budget_exhausted += 1
        elif isinstance(event, TimedOut):
            if event.scope == "attempt":
                tally.attempt_timeouts += 1
            else:
                tally.total_timeouts += 1
        elif isinstance(event, CallRejected):
            tally.rejected += 1
        elif isinstance(event, FallbackServed):
            if event.kind == "cache":
                tally.fallback_cache_hits += 1
            else:
                tally.fallback_static += 1
        elif isinstance(event, FallbackMissed):
            tally.fallback_cache_misses += 1

    def snapshot(self) -> dict[Key, Tally]:
        """Copies, safe to read while events keep coming."""
        return {key: tally.copy() for key, tally in list(self._by_key.items())}
