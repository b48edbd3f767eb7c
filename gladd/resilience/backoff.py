"""The delay before retry number *n*: a pure function of the schedule, *n*, and an RNG.

Kinds (``base`` = base_delay, ``m`` = multiplier, ``n`` = 1 for the first retry):

- ``constant``      base
- ``linear``        base · n
- ``exponential``   base · mⁿ⁻¹
- ``decorrelated``  uniform(base, 3 · previous delay), the AWS "decorrelated jitter"
  (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/); it is
  jittered by construction, so ``jitter`` does not apply to it.

Every delay is capped at ``max_delay`` *before* jitter, so the un-jittered schedule is
monotonic and bounded, and jitter only ever shortens a delay: ``full`` picks uniformly in
[0, d], ``equal`` in [d/2, d].
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gladd.policies.model import BackoffKind, JitterKind

DECORRELATED_GROWTH = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """A delay schedule, precomputed from a retry policy."""

    kind: BackoffKind = "exponential"
    base: float = 0.1
    max: float = 10.0
    multiplier: float = 2.0
    jitter: JitterKind = "full"

    def __post_init__(self) -> None:
        if not (0 <= self.base <= self.max) or not math.isfinite(self.max):
            raise ValueError(f"need 0 ≤ base ≤ max < ∞ (got base={self.base}, max={self.max})")

    def ceiling(self, retry: int) -> float:
        """The un-jittered delay before retry ``retry`` (1-based), capped at ``max``."""
        if self.kind == "constant":
            raw = self.base
        elif self.kind == "linear":
            raw = self.base * retry
        else:
            # exponential; also decorrelated's upper envelope. Cap the exponent so a huge
            # retry number cannot overflow a float.
            exponent = min(retry - 1, 1024)
            try:
                raw = self.base * self.multiplier**exponent
            except OverflowError:
                raw = math.inf
        return min(raw, self.max)

    def delay(self, retry: int, previous: float, rng: random.Random) -> float:
        """The delay before retry ``retry``; ``previous`` is the last delay (0 at first)."""
        if self.kind == "decorrelated":
            high = min(self.max, max(self.base, previous) * DECORRELATED_GROWTH)
            return min(self.max, rng.uniform(self.base, high))
        ceiling = self.ceiling(retry)
        if self.jitter == "full":
            return min(ceiling, rng.uniform(0.0, ceiling))
        if self.jitter == "equal":
            half = ceiling / 2
            return min(ceiling, half + rng.uniform(0.0, half))
        return ceiling
