"""Counters derived from events: the figures ``/metrics`` and ``gladd status`` show.

Per policy name: calls and their outcomes, retries and the retry success rate, budget
refusals, timeouts, breaker trips, fallbacks and the cache hit rate. Each event updates a
few integers with no await in between, so within the event loop an update is atomic; a
reader in another thread (a metrics scrape) gets a consistent-enough frozen snapshot.
"""

from __future__ import annotations

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
from gladd.resilience.state import BreakerState


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """The counters of one policy (or of all, summed)."""

    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    retries: int = 0
    succeeded_after_retry: int = 0
    failed_after_retry: int = 0
    budget_exhausted: int = 0
    attempt_timeouts: int = 0
    total_timeouts: int = 0
    breaker_opened: int = 0
    fallbacks_served: int = 0
    cache_hits: int = 0
    cache_misses: int = 0

    @property
    def success_rate(self) -> float | None:
        """Share of calls that returned a value (None before any call)."""
        return _rate(self.succeeded, self.calls)

    @property
    def retry_success_rate(self) -> float | None:
        """Of the calls that needed a retry, the share that then succeeded."""
        return _rate(
            self.succeeded_after_retry, self.succeeded_after_retry + self.failed_after_retry
        )

    @property
    def fallback_rate(self) -> float | None:
        """Of the calls a breaker rejected, the share a fallback answered."""
        return _rate(self.fallbacks_served, self.rejected)

    @property
    def cache_hit_rate(self) -> float | None:
        """Of the cache fallback's lookups, the share that found a fresh value."""
        return _rate(self.cache_hits, self.cache_hits + self.cache_misses)

    @property
    def timeouts(self) -> int:
        return self.attempt_timeouts + self.total_timeouts

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


@dataclass(slots=True)
class _Tally:
    """The mutable twin of :class:`Figures`."""

    calls: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    retries: int = 0
    succeeded_after_retry: int = 0
    failed_after_retry: int = 0
    budget_exhausted: int = 0
    attempt_timeouts: int = 0
    total_timeouts: int = 0
    breaker_opened: int = 0
    fallbacks_served: int = 0
    cache_hits: int = 0
    cache_misses: int = 0

    def freeze(self) -> Figures:
        return Figures(**{f.name: getattr(self, f.name) for f in fields(self)})


class Counters:
    """A sink that counts; read with :meth:`figures` or :meth:`by_policy`."""

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

    __slots__ = ("_tallies", "breaker_states")

    def __init__(self) -> None:
        self._tallies: dict[str, _Tally] = {}
        self.breaker_states: dict[tuple[str, str], BreakerState] = {}
        """The last state seen per (breaker policy, target)."""

    def _tally(self, policy: str) -> _Tally:
        tally = self._tallies.get(policy)
        if tally is None:
            tally = self._tallies[policy] = _Tally()
        return tally

    def __call__(self, event: Event, /) -> None:
        tally = self._tallies.get(event.policy) or self._tally(event.policy)
        if type(event) is CallSucceeded:  # the hot one first
            tally.calls += 1
            tally.succeeded += 1
            if event.attempts > 1:
                tally.succeeded_after_retry += 1
        elif isinstance(event, GaveUp):
            tally.calls += 1
            tally.failed += 1
            if event.attempts > 1:
                tally.failed_after_retry += 1
        else:
            self._rare(tally, event)

    def _rare(self, tally: _Tally, event: Event) -> None:
        if isinstance(event, RetryScheduled):
            tally.retries += 1
        elif isinstance(event, BudgetExhausted):
            tally.budget_exhausted += 1
        elif isinstance(event, TimedOut):
            if event.scope == "attempt":
                tally.attempt_timeouts += 1
            else:
                tally.total_timeouts += 1
        elif isinstance(event, BreakerStateChanged):
            self.breaker_states[event.policy, event.target] = event.new
            if event.new is BreakerState.OPEN:
                tally.breaker_opened += 1
        elif isinstance(event, CallRejected):
            tally.calls += 1
            tally.rejected += 1
        elif isinstance(event, FallbackServed):
            tally.fallbacks_served += 1
            if event.kind == "cache":
                tally.cache_hits += 1
        elif isinstance(event, FallbackMissed):
            tally.cache_misses += 1

    def by_policy(self) -> dict[str, Figures]:
        return {name: tally.freeze() for name, tally in list(self._tallies.items())}

    def figures(self, policy: str | None = None) -> Figures:
        """The figures of ``policy``, or of every policy summed."""
        if policy is not None:
            tally = self._tallies.get(policy)
            return tally.freeze() if tally is not None else Figures()
        total = Figures()
        for figures in self.by_policy().values():
            total += figures
        return total
