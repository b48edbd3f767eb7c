"""The resilience engine: retry, timeouts, circuit breakers, retry budgets, fallbacks.

Pure, synchronous decisions (:mod:`.backoff`, :mod:`.retry`, :mod:`.breaker`,
:mod:`.budget`, :mod:`.classify`, :mod:`.retry_after`) over an injectable :class:`Clock`
and a seedable RNG; a thin async shell (:class:`Guard`, :class:`ResilientTransport`) that
only sleeps and calls; events to pluggable sinks (:class:`Counters`, :class:`LogSink`);
and :class:`Resilience` (:mod:`.guards`), the guard registry built from ``Policies`` and reloaded
with ``apply``.
"""

from gladd.errors import (
    AttemptTimeout,
    BreakerOpen,
    BulkheadFull,
    RateLimited,
    ResilienceError,
    ResilienceTimeout,
    RetriesExhausted,
    RetryBudgetExhausted,
    ServiceCooldown,
    TotalTimeout,
)
from gladd.resilience.backoff import Backoff
from gladd.resilience.breaker import Breaker, BreakerStats
from gladd.resilience.budget import BudgetStats, RetryBudget
from gladd.resilience.classify import Classifier, status_class
from gladd.resilience.clock import Clock, FakeClock, SystemClock
from gladd.resilience.cooldown import Cooldown, Cooldowns
from gladd.resilience.counters import Counters, Figures
from gladd.resilience.events import (
    AttemptStarted,
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
    Sink,
    TimedOut,
)
from gladd.resilience.fallback import NO_CACHE
from gladd.resilience.guard import Guard, guard_for
from gladd.resilience.guards import Resilience
from gladd.resilience.logsink import LogSink
from gladd.resilience.outbound import Outbound
from gladd.resilience.retry import RetryPlan, decide
from gladd.resilience.retry_after import parse_retry_after
from gladd.resilience.state import BreakerState, ReconfigureResult
from gladd.resilience.transport import AttemptClient, ResilientTransport

__all__ = [
    "NO_CACHE",
    "AttemptClient",
    "AttemptStarted",
    "AttemptTimeout",
    "Backoff",
    "Breaker",
    "BreakerOpen",
    "BreakerState",
    "BreakerStateChanged",
    "BreakerStats",
    "BudgetExhausted",
    "BudgetStats",
    "BulkheadFull",
    "CallRejected",
    "CallSucceeded",
    "Classifier",
    "Clock",
    "Cooldown",
    "CooldownBegan",
    "Cooldowns",
    "Counters",
    "Event",
    "FakeClock",
    "FallbackMissed",
    "FallbackServed",
    "Figures",
    "GaveUp",
    "Guard",
    "LogSink",
    "Outbound",
    "OutboundRefused",
    "RateLimited",
    "RateWaited",
    "ReconfigureResult",
    "Resilience",
    "ResilienceError",
    "ResilienceTimeout",
    "ResilientTransport",
    "RetriesExhausted",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryPlan",
    "RetryScheduled",
    "ServiceCooldown",
    "Sink",
    "SystemClock",
    "TimedOut",
    "TotalTimeout",
    "decide",
    "guard_for",
    "parse_retry_after",
    "status_class",
]
