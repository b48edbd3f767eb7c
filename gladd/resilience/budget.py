"""A retry budget shared by every caller of one retry policy (Finagle / Envoy style).

A retry is allowed only while the retries in the sliding ``window`` stay under
``max(ratio x calls in the window, min_per_second x window)``; the floor lets a quiet
service still retry at all. Calls are original calls, not attempts, so retries cannot
earn themselves more budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from gladd.policies.model import BudgetPolicy
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.state import ReconfigureResult
from gladd.resilience.window import SlidingPair


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetStats:
    """A snapshot of the window: calls, retries spent, and retries allowed right now."""

    calls: int
    retries: int
    allowed: float


class RetryBudget:
    """Retries ≤ ratio of calls per sliding window, with a minimum rate."""

    __slots__ = ("_counts", "name", "policy", "record_call")

    def __init__(
        self, policy: BudgetPolicy, *, name: str = "", clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.name = name
        self.policy = policy
        self._counts = SlidingPair(policy.window, clock.monotonic)  # a: calls, b: retries
        self.record_call = self._counts.add_a
        """Count one call (not a retry); on the success path of every guarded call."""

    def _allowed(self) -> float:
        p = self.policy
        return max(p.ratio * self._counts.a, p.min_per_second * p.window)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        self._counts.slide()
        if self._counts.b + 1 > self._allowed():
            return False
        self._counts.add_b()
        return True

    def stats(self) -> BudgetStats:
        self._counts.slide()
        return BudgetStats(calls=self._counts.a, retries=self._counts.b, allowed=self._allowed())

    def reconfigure(self, policy: BudgetPolicy) -> ReconfigureResult:
        """Take ``policy`` live; every change is compatible and the counts are kept.

        A new window length keeps what was counted in the current slice, so it ages out
        one new window from now (never earlier).
        """
        old, self.policy = self.policy, policy
        fields = ("ratio", "window", "min_per_second")
        changed = tuple(f for f in fields if getattr(old, f) != getattr(policy, f))
        if "window" in changed:
            self._counts.resize(policy.window)
        return ReconfigureResult(name=self.name, kept_state=True, changed=changed)
