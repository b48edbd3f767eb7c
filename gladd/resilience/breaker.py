"""A circuit breaker as a synchronous state machine over an injectable clock.

Modes (``breaker.*.mode``):

- ``consecutive``: open after ``failures`` failures in a row.
- ``ratio``: open when, over the sliding ``window``, at least ``minimum_calls`` calls were
  seen and the share of failures reached ``failure_ratio`` (Polly v8 / resilience4j).

A success slower than ``slow_call`` counts as a failure. When open, calls fail fast until
``open_for`` has passed (x ``open_backoff`` for each trip in a row, up to ``max_open_for``);
then up to ``half_open_probes`` probe calls go through: all succeeding closes the circuit,
any failing opens it again. ``isolate()`` holds it open until ``reset()``.

Every permit carries the breaker's *generation*, bumped on each transition, and a result
reported with a stale generation is ignored: a slow call that started before a trip cannot
close a circuit, nor fail a half-open phase it was not a probe of.

A permit can be *held* for a block (:meth:`Breaker.holding`): the calls made inside it
through the same breaker share that permit instead of taking their own. The executor holds
a task's permit while its handler runs, so when the task is the half-open probe, the HTTP
calls it makes through the service's breaker are the probe (rather than refused for want
of a second probe slot), and their verdicts, not a second one from the task, count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from gladd.policies.model import BreakerPolicy
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.events import BreakerStateChanged, Event
from gladd.resilience.fallback import FallbackCache
from gladd.resilience.state import BreakerState, ReconfigureResult
from gladd.resilience.window import SlidingPair

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
ISOLATED = BreakerState.ISOLATED


@dataclass(slots=True, eq=False)
class Held:
    """A permit held for a block (see :meth:`Breaker.holding`)."""

    breaker: Breaker
    permit: int
    used: bool = False
    """Whether a call inside the block shared the permit (and reported its own verdict)."""


_HELD: ContextVar[Held | None] = ContextVar("gladd_breaker_held", default=None)

RECENT_FAILURES = 5
"""How many of its last failures a breaker keeps, to say why it opened."""

_COMPATIBLE_FIELDS = (
    "failures",
    "failure_ratio",
    "minimum_calls",
    "window",
    "slow_call",
    "open_for",
    "open_backoff",
    "max_open_for",
    "half_open_probes",
    "fallback",
    "fallback_value",
    "cache_max_age",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStats:
    """A snapshot for health checks, metrics and ``gladd status``."""

    name: str
    state: BreakerState
    consecutive_failures: int
    window_successes: int
    window_failures: int
    trips: int
    """Trips in a row without a successful close (drives the open backoff)."""
    opened_total: int
    retry_in: float | None
    """Seconds until the next probe may run (open only)."""
    since_ago: float = 0.0
    """Seconds since the breaker entered its state (since it was built, if it never moved)."""
    reason: str = ""
    """Why it entered its state ("" if it never moved)."""
    recent_failures: tuple[RecentFailure, ...] = ()
    """Its last failures (at most :data:`RECENT_FAILURES`), oldest first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecentFailure:
    """One failure a breaker counted: what it was, and how many seconds ago."""

    reason: str
    ago: float


class Breaker:
    """One circuit breaker; see the module docstring for the rules."""

    __slots__ = (
        "_emit",
        "_failures",
        "_generation",
        "_half_open_ok",
        "_now",
        "_open_until",
        "_opened_at",
        "_permits",
        "_reason",
        "_recent",
        "_since",
        "_state",
        "_window",
        "cache",
        "name",
        "opened_total",
        "policy",
        "slow_call",
        "target",
        "trips",
    )

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        name: str = "",
        target: str = "",
        clock: Clock = SYSTEM_CLOCK,
        emit: Callable[[Event], None] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.policy = policy
        self.slow_call = policy.slow_call
        self._now = clock.monotonic
        self._emit = emit
        self._state = CLOSED
        self._generation = 0
        self._failures = 0  # consecutive failures while closed
        self._window = SlidingPair(policy.window, clock.monotonic)  # a: ok, b: failed
        self._permits = 0  # half-open probes handed out and not given back
        self._half_open_ok = 0
        self._opened_at = 0.0
        self._open_until = 0.0
        self._since = clock.monotonic()
        self._reason = ""
        self._recent: deque[tuple[float, str]] = deque(maxlen=RECENT_FAILURES)
        self.trips = 0
        self.opened_total = 0
        self.cache: FallbackCache | None = None
        """The last good values, kept only when ``fallback = "cache"``."""
        self._sync_cache()

    def _sync_cache(self) -> None:
        policy = self.policy
        if policy.fallback != "cache":
            self.cache = None
        elif self.cache is None:
            self.cache = FallbackCache(max_age=policy.cache_max_age, now=self._now)
        else:
            self.cache.max_age = policy.cache_max_age

    # -- reading ------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose time is up reads as half-open)."""
        if self._state is OPEN and self._now() >= self._open_until:
            self._move(HALF_OPEN, "open duration elapsed")
        return self._state

    def retry_in(self) -> float | None:
        if self._state is not OPEN:
            return None
        return max(0.0, self._open_until - self._now())

    def stats(self) -> BreakerStats:
        state = self.state
        self._window.slide()
        return BreakerStats(
            name=self.name,
            state=state,
            consecutive_failures=self._failures,
            window_successes=self._window.a,
            window_failures=self._window.b,
            trips=self.trips,
            opened_total=self.opened_total,
            retry_in=self.retry_in(),
            since_ago=max(0.0, self._now() - self._since),
            reason=self._reason,
            recent_failures=self.recent_failures(),
        )

    def recent_failures(self) -> tuple[RecentFailure, ...]:
        """The last failures counted (a reset forgets them), oldest first."""
        now = self._now()
        return tuple(RecentFailure(reason=r, ago=max(0.0, now - t)) for t, r in self._recent)

    # -- the call protocol --------------------------------------------------------------

    def acquire(self) -> int | None:
        """A permit (the generation) to make one call, or None: fail fast."""
        held = _HELD.get()
        if held is not None and held.breaker is self and held.permit == self._generation:
            # The holder's own permit (still current: no transition since), shared.
            held.used = True
            return self._generation
        if self._state is CLOSED:
            return self._generation
        if self.state is HALF_OPEN and self._permits < self.policy.half_open_probes:
            self._permits += 1
            return self._generation
        return None

    def record_success(self, permit: int, duration: float = 0.0) -> None:
        """The permitted call succeeded after ``duration`` seconds."""
        if permit != self._generation:
            return
        slow = self.slow_call
        if slow is not None and duration >= slow:
            self._failed(f"slow call ({duration:.3g}s ≥ {slow:.3g}s)")
            return
        if self._state is CLOSED:
            self._failures = 0
            if self.policy.mode == "ratio":
                self._window.add_a()
        elif self._state is HALF_OPEN:
            self._half_open_ok += 1
            if self._half_open_ok >= self.policy.half_open_probes:
                self.trips = 0
                self._move(CLOSED, f"{self._half_open_ok} probe(s) succeeded")

    def record_result(self, permit: int, started: float, key: Hashable, value: Any) -> None:
        """The guard's success path: record the success, timed, and cache the value."""
        if self.slow_call is None:
            self.record_success(permit)
        else:
            self.record_success(permit, self._now() - started)
        if self.cache is not None:
            self.cache.store(key, value)

    def record_failure(self, permit: int, reason: str = "failure") -> None:
        """The permitted call failed in a way that says the service is unhealthy."""
        if permit == self._generation:
            self._failed(reason)

    @contextmanager
    def holding(self, permit: int) -> Iterator[Held]:
        """Calls through this breaker inside the block share ``permit``, taken by the
        caller; ``held.used`` says whether any did (their verdicts then count, not the
        holder's: end with :meth:`release`)."""
        held = Held(breaker=self, permit=permit)
        token = _HELD.set(held)
        try:
            yield held
        finally:
            _HELD.reset(token)

    def release(self, permit: int) -> None:
        """The permitted call ended with no verdict (cancelled): free its probe slot."""
        held = _HELD.get()
        if held is not None and held.breaker is self and held.permit == permit:
            return  # a call that shared the holder's permit: the slot is the holder's
        if permit == self._generation and self._state is HALF_OPEN:
            self._permits -= 1

    def _failed(self, reason: str) -> None:
        if self._state is HALF_OPEN or self._state is CLOSED:
            self._recent.append((self._now(), reason))
        if self._state is HALF_OPEN:
            self._trip(f"probe failed: {reason}")
        elif self._state is CLOSED:
            self._failures += 1
            policy = self.policy
            if policy.mode == "consecutive":
                if self._failures >= policy.failures:
                    self._trip(f"{self._failures} consecutive failures, last: {reason}")
                return
            window = self._window
            window.add_b()
            total = window.a + window.b
            if total >= policy.minimum_calls and window.b >= policy.failure_ratio * total:
                self._trip(
                    f"{window.b}/{total} calls failed in {policy.window:g}s "
                    f"(≥ {policy.failure_ratio:g}), last: {reason}"
                )

    # -- transitions --------------------------------------------------------------------

    def _open_duration(self) -> float:
        p = self.policy
        return min(p.max_open_for, p.open_for * p.open_backoff ** max(0, self.trips - 1))

    def _trip(self, reason: str) -> None:
        self.trips += 1
        self.opened_total += 1
        self._opened_at = self._now()
        self._open_until = self._opened_at + self._open_duration()
        self._move(OPEN, reason)

    def _move(self, new: BreakerState, reason: str) -> None:
        old, self._state = self._state, new
        if old is not new:
            self._since = self._now()
            self._reason = reason
        self._generation += 1
        self._permits = 0
        self._half_open_ok = 0
        if new is CLOSED:
            self._failures = 0
            self._window.clear()
        if self._emit is not None and old is not new:
            self._emit(
                BreakerStateChanged(
                    policy=self.name, target=self.target, old=old, new=new, reason=reason
                )
            )

    def isolate(self, reason: str = "isolated by an operator") -> None:
        """Hold the circuit open (calls fail fast or get the fallback) until :meth:`reset`."""
        self._move(ISOLATED, reason)

    def reset(self, reason: str = "reset by an operator") -> None:
        """Close the circuit and forget every count and trip."""
        self.trips = 0
        self._move(CLOSED, reason)
        self._window.clear()
        self._recent.clear()

    # -- live reconfiguration ------------------------------------------------------------

    def reconfigure(self, policy: BreakerPolicy) -> ReconfigureResult:
        """Take ``policy`` live, keeping the state unless the mode changed.

        Thresholds and durations are compatible: the state, counts and trips are kept, an
        open circuit's end is recomputed from when it opened, and a shorter window keeps
        its counts until they age out. A mode change cannot map one count onto the other,
        so it resets the breaker to closed (an isolated breaker stays isolated).
        """
        old, self.policy = self.policy, policy
        self.slow_call = policy.slow_call
        self._sync_cache()
        fields = ("mode", *_COMPATIBLE_FIELDS)
        changed = tuple(f for f in fields if getattr(old, f) != getattr(policy, f))
        if "window" in changed:
            self._window.resize(policy.window)
        if "mode" in changed:
            reason = f"mode changed from {old.mode} to {policy.mode}: counts reset"
            self.trips = 0
            self._failures = 0
            self._window.clear()
            if self._state is not ISOLATED and self._state is not CLOSED:
                self._move(CLOSED, reason)
            return ReconfigureResult(
                name=self.name, kept_state=False, changed=changed, reason=reason
            )
        if self._state is OPEN:
            self._open_until = self._opened_at + self._open_duration()
        return ReconfigureResult(name=self.name, kept_state=True, changed=changed)
