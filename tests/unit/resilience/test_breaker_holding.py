"""A held permit: the calls a probe task makes through its own service's breaker."""

from __future__ import annotations

from gladd.resilience.state import BreakerState

from .test_breaker import fail, make


def half_open(probes: int = 1):  # type: ignore[no-untyped-def]
    breaker, clock, _ = make(failures=1, open_for=10.0, half_open_probes=probes)
    fail(breaker)
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN
    return breaker


def test_calls_inside_the_holding_block_share_the_probe_permit() -> None:
    breaker = half_open()
    permit = breaker.acquire()
    assert permit is not None
    assert breaker.acquire() is None  # the only probe slot is taken
    with breaker.holding(permit) as held:
        inner = breaker.acquire()  # the task's own HTTP call: it *is* the probe
        assert inner == permit
        breaker.release(inner)  # a call with no verdict does not free the holder's slot
        assert breaker.acquire() == permit
        breaker.record_success(permit)
    assert held.used
    assert breaker.state is BreakerState.CLOSED


def test_outside_the_block_or_for_another_breaker_nothing_is_shared() -> None:
    breaker, other = half_open(), half_open()
    permit = breaker.acquire()
    assert permit is not None
    with breaker.holding(permit) as held:
        assert other.acquire() is not None  # its own slot, not the held one
        assert other.acquire() is None
    assert not held.used
    assert breaker.acquire() is None


def test_a_held_permit_from_before_a_trip_is_not_shared() -> None:
    breaker = half_open()
    permit = breaker.acquire()
    assert permit is not None
    with breaker.holding(permit):
        breaker.record_failure(permit)  # the probe's call failed: open again
        assert breaker.acquire() is None  # the stale permit lets nothing through
