"""Every decision the engine makes, as a small frozen event sent to pluggable sinks.

A sink is any callable taking an :class:`Event`; it may declare ``wants`` (a set of event
classes) to receive only those. The guard resolves, once per policy at build time, which
sinks want which class, so an event nobody wants is never even constructed. The events of
the success path (the first attempt, a first-try success) are immutable values identical
for every call of a guard, so the guard builds them once and emits the same object.

``policy`` is the retry (or breaker) policy's name, ``target`` what is being called (a
service, a task kind, ``database``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from gladd.resilience.state import BreakerState

GiveUpReason = Literal[
    "not_retryable",  # the error is not one the policy retries (e.g. a programming error)
    "attempts",  # every allowed attempt was used
    "deadline",  # the next sleep would end past the total deadline
    "retry_after",  # the server asked for a wait longer than retry_after_cap
    "budget",  # the shared retry budget is spent
    "non_idempotent",  # an HTTP method that is not safe to repeat
    "total_timeout",  # the total deadline cut an attempt short
    "cooldown",  # the service asked for a pause (429/503 + Retry-After): ServiceCooldown
]

RefusalReason = Literal[
    "max_in_flight",  # no bulkhead slot came within max_wait
    "rate",  # no rate token came within max_wait
    "cooldown",  # the service is cooling down: nothing is sent until it ends
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event."""

    policy: str
    target: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptStarted(Event):
    """Attempt number ``attempt`` (1 is the first call) is about to run."""

    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSucceeded(Event):
    """The call returned a value after ``attempts`` attempts."""

    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` failed with a retryable ``cause``; the next runs after ``delay``."""

    attempt: int
    delay: float
    cause: str
    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GaveUp(Event):
    """The call failed for good after ``attempts`` attempts, for ``reason``."""

    attempts: int
    reason: GiveUpReason
    cause: str | None
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetExhausted(Event):
    """The shared retry budget refused a retry after attempt ``attempt``."""

    attempt: int
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut(Event):
    """Attempt ``attempt`` was cancelled by the attempt timeout or the total deadline."""

    attempt: int
    scope: Literal["attempt", "total"]
    after: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStateChanged(Event):
    """A breaker moved from ``old`` to ``new``; ``policy`` is the breaker policy's name."""

    old: BreakerState
    new: BreakerState
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(Event):
    """A breaker in ``state`` failed a call fast."""

    breaker: str
    state: BreakerState
    retry_in: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackServed(Event):
    """A rejected call was answered by a fallback; ``age`` is the cached value's age."""

    kind: Literal["static", "cache"]
    age: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackMissed(Event):
    """The cache fallback had nothing (fresh enough) to serve; the call failed fast."""

    reason: Literal["empty", "too_old"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRefused(Event):
    """A request to service ``target`` was failed locally, before anything was sent."""

    reason: RefusalReason
    limit: float | None
    """max_in_flight, or the rate a second (None for a cooldown)."""
    waited: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RateWaited(Event):
    """A request to service ``target`` waited ``delay`` seconds for its rate token."""

    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CooldownBegan(Event):
    """Service ``target`` answered ``status`` with ``Retry-After``: no request leaves this
    node for it before ``until`` (UTC)."""

    status: int
    retry_after: float
    until: datetime


EVENT_TYPES: tuple[type[Event], ...] = (
    AttemptStarted,
    CallSucceeded,
    RetryScheduled,
    GaveUp,
    BudgetExhausted,
    TimedOut,
    BreakerStateChanged,
    CallRejected,
    FallbackServed,
    FallbackMissed,
    OutboundRefused,
    RateWaited,
    CooldownBegan,
)


class Sink(Protocol):
    """Receives events; must not block or await (it runs inside the decision)."""

    def __call__(self, event: Event, /) -> None: ...


Emit = Callable[[Event], None]


def wanted_by(sink: Sink) -> frozenset[type[Event]]:
    """The event classes ``sink`` declares in ``wants`` (all of them when it declares none)."""
    wants: Iterable[type[Event]] | None = getattr(sink, "wants", None)
    return frozenset(EVENT_TYPES if wants is None else wants)


class Dispatch:
    """Which sinks want which event class, resolved once; ``for_(cls)`` is a tuple."""

    __slots__ = ("_by_type", "sinks")

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks = tuple(sinks)
        wants = [(sink, wanted_by(sink)) for sink in self.sinks]
        self._by_type = {cls: tuple(sink for sink, w in wants if cls in w) for cls in EVENT_TYPES}

    def for_(self, cls: type[Event]) -> tuple[Sink, ...]:
        return self._by_type[cls]

    def emitter(self, cls: type[Event]) -> Emit | None:
        """One callable sending to every sink that wants ``cls``, or None when none does."""
        sinks = self._by_type[cls]
        if not sinks:
            return None
        if len(sinks) == 1:
            return sinks[0]

        def emit(event: Event) -> None:
            for sink in sinks:
                sink(event)

        return emit


NO_SINKS = Dispatch()
