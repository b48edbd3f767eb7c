"""Counters: per (policy, target) figures, summed per policy, and breaker transitions."""

from __future__ import annotations

from gladd.resilience import BreakerState, Counters, Figures
from gladd.resilience.events import (
    BreakerStateChanged,
    CallRejected,
    CallSucceeded,
    FallbackServed,
    GaveUp,
    RetryScheduled,
    TimedOut,
)


def opened(breaker: str, target: str) -> BreakerStateChanged:
    return BreakerStateChanged(
        policy=breaker, target=target, old=BreakerState.CLOSED, new=BreakerState.OPEN, reason="x"
    )


def test_two_services_sharing_a_policy_stay_apart_and_sum_per_policy() -> None:
    counters = Counters()
    counters(CallSucceeded(policy="http", target="github", attempts=1))
    counters(
        RetryScheduled(policy="http", target="crm", attempt=1, delay=0.1, cause="5xx", error="e")
    )
    counters(TimedOut(policy="http", target="crm", attempt=2, scope="attempt", after=1.0))
    counters(
        GaveUp(policy="http", target="crm", attempts=2, reason="attempts", cause=None, error="t")
    )

    by_target = counters.by_target()
    assert by_target["http", "github"] == Figures(calls=1, succeeded=1)
    crm = by_target["http", "crm"]
    assert (crm.calls, crm.failed, crm.failed_after_retry, crm.attempts) == (1, 1, 1, 2)
    assert crm.timeout_rate == 0.5
    assert counters.by_policy() == {"http": by_target["http", "github"] + crm}
    assert counters.figures() == counters.figures("http")
    assert counters.figures("nope") == Figures()


def test_a_breaker_named_apart_counts_per_policy_but_adds_no_call_row() -> None:
    counters = Counters()
    counters(
        CallRejected(
            policy="http", target="crm", breaker="crm-b", state=BreakerState.OPEN, retry_in=3
        )
    )
    counters(FallbackServed(policy="http", target="crm", kind="static", age=None))
    counters(opened("crm-b", "crm"))

    assert list(counters.by_target()) == [("http", "crm")]
    assert counters.by_target()["http", "crm"].static_fallbacks == 1
    assert counters.transitions == {("crm-b", "crm", "open"): 1}
    assert counters.breaker_states == {("crm-b", "crm"): BreakerState.OPEN}
    assert counters.by_policy()["crm-b"] == Figures(breaker_opened=1)
    assert counters.figures().breaker_opened == 1
