"""Counters derived from events: the figures ``/metrics`` and ``gladd status`` show.

Per (policy, target): calls and their outcomes, retries and the retry success rate, budget
refusals, timeouts, fallbacks and the cache hit rate; per (breaker, target), the breaker's
transitions; per service, the requests its flow control refused (by reason), its rate
waits and its cooldowns. The target is what a call or breaker guards (an HTTP service, ``database``,
or a task kind with a breaker of its own), so two services sharing a retry policy stay
apart. Each event updates a few integers with no await in between, so within the event
loop an update is atomic and a reader there (a metrics scrape) sees every figure at once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, fields

from gladd.resilience.events import (
    BreakerStateChanged,
    BudgetExhausted,
    CallRejected,
    CallSucceeded,
    CooldownBegan,
    Event,
    FallbackMissed,
    FallbackServed,
    GaveUp,
    OutboundRefused,
    RateWaited,
    RetryScheduled,
    TimedOut,
)
from gladd.resilience.state import BreakerState


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """The counters of one (policy, target), or of several summed."""

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
    def static_fallbacks(self) -> int:
        """Fallbacks served from the policy's static value (the others came from the cache)."""
        return self.fallbacks_served - self.cache_hits

    @property
    def cache_hit_rate(self) -> float | None:
        """Of the cache fallback's lookups, the share that found a fresh value."""
        return _rate(self.cache_hits, self.cache_hits + self.cache_misses)

    @property
    def timeouts(self) -> int:
        return self.attempt_timeouts + self.total_timeouts

    @property
    def attempts(self) -> int:
        """Attempts made: each call's first (unless rejected), plus each retry."""
        return self.succeeded + self.failed + self.retries

    @property
    def timeout_rate(self) -> float | None:
        """Of the attempts made, the share that timed out."""
        return _rate(self.timeouts, self.attempts)

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


Key = tuple[str, str]
"""(policy, target)."""

_BUMPED = tuple(f.name for f in fields(Figures) if f.name not in ("calls", "breaker_opened"))
"""The figures events bump one by one: ``calls`` is a sum of three, and a breaker's opens
are read from :attr:`Counters.transitions`."""

_OPEN = BreakerState.OPEN.value


class Counters:
    """A sink that counts; read with :meth:`figures`, :meth:`by_policy`, :meth:`by_target`."""

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
            OutboundRefused,
            RateWaited,
            CooldownBegan,
        }
    )

    __slots__ = (
        "_counts",
        "breaker_states",
        "cooldowns",
        "rate_wait_seconds",
        "rate_waits",
        "refusals",
        "transitions",
    )

    def __init__(self) -> None:
        self._counts: dict[Key, dict[str, int]] = {}
        """Per (policy, target) that saw a call: :data:`_BUMPED` by name; one dict, not a
        mutable twin of :class:`Figures`, so the fields are listed once."""
        self.transitions: Counter[tuple[str, str, str]] = Counter()
        """Breaker transitions by (breaker, target, new state)."""
        self.breaker_states: dict[Key, BreakerState] = {}
        """The last state seen per (breaker policy, target)."""
        self.refusals: Counter[tuple[str, str]] = Counter()
        """Requests failed before leaving, by (service, reason: max_in_flight, rate,
        cooldown)."""
        self.rate_waits: Counter[str] = Counter()
        """Requests that waited for a rate token, by service."""
        self.rate_wait_seconds: defaultdict[str, float] = defaultdict(float)
        """The seconds they waited, by service."""
        self.cooldowns: Counter[str] = Counter()
        """Cooldowns begun or extended by a service's answer, by service."""

    def _of(self, event: Event) -> dict[str, int]:
        key = (event.policy, event.target)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = dict.fromkeys(_BUMPED, 0)
        return counts

    def __call__(self, event: Event, /) -> None:
        if type(event) is CallSucceeded:  # the hot one first
            counts = self._of(event)
            counts["succeeded"] += 1
            if event.attempts > 1:
                counts["succeeded_after_retry"] += 1
        elif isinstance(event, GaveUp):
            counts = self._of(event)
            counts["failed"] += 1
            if event.attempts > 1:
                counts["failed_after_retry"] += 1
        elif isinstance(event, BreakerStateChanged):
            # Not under the call counts: a breaker named unlike the retry policy of the
            # calls it guards would add a (breaker, target) that saw no call.
            self.transitions[event.policy, event.target, event.new.value] += 1
            self.breaker_states[event.policy, event.target] = event.new
        elif isinstance(event, OutboundRefused | RateWaited | CooldownBegan):
            self._flow(event)
        else:
            self._rare(self._of(event), event)

    def _flow(self, event: OutboundRefused | RateWaited | CooldownBegan) -> None:
        # Per service, not under the call counts: nothing was sent, or it is about a wait.
        if isinstance(event, OutboundRefused):
            self.refusals[event.target, event.reason] += 1
        elif isinstance(event, RateWaited):
            self.rate_waits[event.target] += 1
            self.rate_wait_seconds[event.target] += event.delay
        else:
            self.cooldowns[event.target] += 1

    @staticmethod
    def _rare(counts: dict[str, int], event: Event) -> None:
        if isinstance(event, RetryScheduled):
            counts["retries"] += 1
        elif isinstance(event, BudgetExhausted):
            counts["budget_exhausted"] += 1
        elif isinstance(event, TimedOut):
            counts["attempt_timeouts" if event.scope == "attempt" else "total_timeouts"] += 1
        elif isinstance(event, CallRejected):
            counts["rejected"] += 1
        elif isinstance(event, FallbackServed):
            counts["fallbacks_served"] += 1
            if event.kind == "cache":
                counts["cache_hits"] += 1
        elif isinstance(event, FallbackMissed):
            counts["cache_misses"] += 1

    def _figures(self, policy: str, target: str) -> Figures:
        opened = self.transitions[policy, target, _OPEN]
        counts = self._counts.get((policy, target))
        if counts is None:
            return Figures(breaker_opened=opened)
        calls = counts["succeeded"] + counts["failed"] + counts["rejected"]
        return Figures(calls=calls, breaker_opened=opened, **counts)

    def by_target(self) -> dict[Key, Figures]:
        """The figures of each (policy, target) that saw a call.

        ``breaker_opened`` counts the opens of the breaker named like the policy on that
        target; every breaker's are in :attr:`transitions`.
        """
        return {key: self._figures(*key) for key in list(self._counts)}

    def by_policy(self) -> dict[str, Figures]:
        """The figures of each policy (retry or breaker), summed over its targets."""
        keys = dict.fromkeys([*self._counts, *((b, t) for b, t, _ in list(self.transitions))])
        totals: dict[str, Figures] = {}
        for policy, target in keys:
            figures = self._figures(policy, target)
            totals[policy] = totals[policy] + figures if policy in totals else figures
        return totals

    def figures(self, policy: str | None = None) -> Figures:
        """The figures of ``policy``, or of every policy summed."""
        by_policy = self.by_policy()
        if policy is not None:
            return by_policy.get(policy, Figures())
        return sum(by_policy.values(), Figures())
