"""A sink that writes events as loguru lines: which policy, which target, which attempt, why.

Lines carry ``policy`` and ``target`` as bound extras too, for JSON log shippers. Successes
and attempt starts are logged only with ``verbose=True`` (at DEBUG), so by default this sink
does not ask for the events of the success path and costs nothing there.
"""

from __future__ import annotations

from typing import Any

from loguru import logger as default_logger

from gladd.resilience.events import (
    EVENT_TYPES,
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
    TimedOut,
)
from gladd.resilience.state import BreakerState

_QUIET: frozenset[type[Event]] = frozenset((AttemptStarted, CallSucceeded))


class LogSink:
    """Logs each event it receives through loguru."""

    __slots__ = ("_logger", "wants")

    def __init__(self, logger: Any = default_logger, *, verbose: bool = False) -> None:
        self._logger = logger
        self.wants = frozenset(EVENT_TYPES if verbose else set(EVENT_TYPES) - _QUIET)

    def __call__(self, event: Event, /) -> None:
        level, message = render(event)
        self._logger.bind(policy=event.policy, target=event.target).log(level, message)


def render(event: Event) -> tuple[str, str]:
    """The level and text of the log line for ``event``."""
    who = f"[{event.policy} → {event.target or '-'}]"
    if isinstance(event, RetryScheduled):
        why = " (Retry-After)" if event.retry_after is not None else ""
        return "INFO", (
            f"{who} attempt {event.attempt} failed ({event.cause}): {event.error}; "
            f"retrying in {event.delay:.3f}s{why}"
        )
    if isinstance(event, GaveUp):
        return "WARNING", (
            f"{who} giving up after {event.attempts} attempt(s), reason {event.reason}: "
            f"{event.error}"
        )
    if isinstance(event, BudgetExhausted):
        return "WARNING", (
            f"{who} retry budget exhausted after attempt {event.attempt} ({event.cause}): "
            "not retrying, to spare a sick service"
        )
    if isinstance(event, TimedOut):
        scope = "attempt timeout" if event.scope == "attempt" else "total deadline"
        return (
            "WARNING",
            f"{who} attempt {event.attempt} cancelled by the {scope} ({event.after:g}s)",
        )
    if isinstance(event, BreakerStateChanged):
        bad = event.new in (BreakerState.OPEN, BreakerState.ISOLATED)
        return ("WARNING" if bad else "INFO"), (
            f"[breaker {event.policy} → {event.target or '-'}] {event.old.value} → "
            f"{event.new.value}: {event.reason}"
        )
    if isinstance(event, CallRejected):
        when = f", next probe in {event.retry_in:.3g}s" if event.retry_in is not None else ""
        return "DEBUG", f"{who} failed fast: breaker {event.breaker} is {event.state.value}{when}"
    if isinstance(event, FallbackServed):
        age = f" aged {event.age:.3g}s" if event.age is not None else ""
        return "INFO", f"{who} served the {event.kind} fallback{age}"
    if isinstance(event, FallbackMissed):
        return "INFO", f"{who} no cached value to serve ({event.reason}); failing fast"
    if isinstance(event, OutboundRefused | RateWaited | CooldownBegan):
        return _flow(who, event)
    if isinstance(event, AttemptStarted):
        return "DEBUG", f"{who} attempt {event.attempt}"
    if isinstance(event, CallSucceeded):
        return "DEBUG", f"{who} succeeded after {event.attempts} attempt(s)"
    return "DEBUG", f"{who} {event!r}"


def _flow(who: str, event: OutboundRefused | RateWaited | CooldownBegan) -> tuple[str, str]:
    if isinstance(event, CooldownBegan):
        return "WARNING", (
            f"{who} HTTP {event.status} with Retry-After {event.retry_after:g}s: cooling down "
            f"until {event.until:%Y-%m-%dT%H:%M:%S}Z, nothing is sent until then"
        )
    if isinstance(event, RateWaited):
        return "DEBUG", f"{who} waited {event.delay:.3f}s for a rate token"
    if event.reason == "cooldown":
        return "DEBUG", f"{who} not sent: the service is cooling down"
    limit = f" {event.limit:g}" if event.limit is not None else ""
    unit = "/s" if event.reason == "rate" else ""
    return "WARNING", (
        f"{who} not sent: {event.reason}{limit}{unit} left no room within "
        f"{event.waited:.3g}s (local overload)"
    )
