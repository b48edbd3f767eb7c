"""The resilience engine's decisions as span events, when traces are on (:mod:`gladd.tracing`).

A sink like :class:`~gladd.resilience.counters.Counters`, added only while tracing is on: it
wants no event of the success path, so a first try that succeeds costs nothing more. Each
event lands on the span current where the decision was made — an outbound call's CLIENT
span, or an attempt's CONSUMER span for the store's own queries — carrying the policy name
and target, and the event's fields as ``gladd.*`` attributes.
"""

from __future__ import annotations

from dataclasses import fields

from gladd.resilience.events import (
    BreakerStateChanged,
    BudgetExhausted,
    CallRejected,
    Event,
    FallbackMissed,
    FallbackServed,
    GaveUp,
    RetryScheduled,
    TimedOut,
)

EVENT_NAMES: dict[type[Event], str] = {
    RetryScheduled: "gladd.retry",
    GaveUp: "gladd.gave_up",
    BudgetExhausted: "gladd.budget_exhausted",
    TimedOut: "gladd.timeout",
    BreakerStateChanged: "gladd.breaker_state_changed",
    CallRejected: "gladd.breaker_rejected",
    FallbackServed: "gladd.fallback_served",
    FallbackMissed: "gladd.fallback_missed",
}


class SpanEvents:
    """Sends each wanted event to the current span, if it records."""

    wants = frozenset(EVENT_NAMES)

    def __init__(self) -> None:
        from opentelemetry import trace  # noqa: PLC0415 - only built while tracing is on

        self._current_span = trace.get_current_span

    def __call__(self, event: Event, /) -> None:
        span = self._current_span()
        if not span.is_recording():
            return
        attributes: dict[str, str | int | float] = {}
        for f in fields(event):
            value = getattr(event, f.name)
            if value is None:
                continue
            attributes[f"gladd.{f.name}"] = value if isinstance(value, int | float) else str(value)
        span.add_event(EVENT_NAMES[type(event)], attributes)
