"""A token bucket for a service's outbound ``rate``: pure, over the caller's clock.

``rate`` tokens a second accrue up to ``burst`` (1 by default: requests evenly spaced, no
burst after a quiet spell). :meth:`TokenBucket.reserve` takes the next token — now, or at
the moment it will have accrued, when that is within ``max_wait`` — and says how long to
wait for it. A reservation is taken at once, so concurrent waiters queue in order and each
leaves exactly ``1/rate`` after the one before.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    rate: float
    """Tokens a second; > 0."""
    burst: int = 1
    _tokens: float = field(default=0.0, init=False)
    _at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.reconfigure(self.rate, self.burst)

    def reconfigure(self, rate: float, burst: int = 1) -> None:
        """A new rate (a reload); the tokens accrued and the reservations made are kept."""
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate must be > 0 and its burst ≥ 1 (got {rate}, {burst})")
        self.rate, self.burst = rate, burst
        self._tokens = min(self._tokens, float(burst))

    def _refill(self, now: float) -> None:
        if self._at is None:
            self._tokens = float(self.burst)
        elif now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now if self._at is None else max(self._at, now)

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Take the next token: the seconds until it is due (0: now), or None — and nothing
        taken — when it is due later than ``max_wait`` from ``now``."""
        self._refill(now)
        wait = 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate
        if wait > max_wait:
            return None
        self._tokens -= 1.0
        return wait

    def refund(self) -> None:
        """Give back a reserved token that was not used (its request was cancelled)."""
        self._tokens = min(float(self.burst), self._tokens + 1.0)
