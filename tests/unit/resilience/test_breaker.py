"""The breaker state machine, both modes, on a fake clock."""

from __future__ import annotations

from gladd.resilience.breaker import Breaker
from gladd.resilience.clock import FakeClock
from gladd.resilience.events import BreakerStateChanged
from gladd.resilience.state import BreakerState

from ._policies import breaker_policy

CLOSED, OPEN, HALF, ISOLATED = (
    BreakerState.CLOSED,
    BreakerState.OPEN,
    BreakerState.HALF_OPEN,
    BreakerState.ISOLATED,
)


def make(**fields):
    clock = FakeClock()
    events: list[BreakerStateChanged] = []
    breaker = Breaker(breaker_policy(**fields), name="b", clock=clock, emit=events.append)
    return breaker, clock, events


def fail(breaker, n=1):
    for _ in range(n):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record_failure(permit)


def succeed(breaker, n=1, duration=0.0):
    for _ in range(n):
        permit = breaker.acquire()
        assert permit is not None
        breaker.record_success(permit, duration)


def test_defaults_open_after_5_consecutive_and_probe_after_60s():
    b, clock, events = make()
    fail(b, 4)
    succeed(b)  # a success breaks the run
    fail(b, 4)
    assert b.state is CLOSED
    fail(b)
    assert b.state is OPEN
    assert b.acquire() is None  # fail fast
    clock.advance(59.9)
    assert b.acquire() is None
    assert b.retry_in() == 0.1 or abs(b.retry_in() - 0.1) < 1e-9
    clock.advance(0.1)
    assert b.state is HALF
    succeed(b)
    assert b.state is CLOSED
    assert [(e.old, e.new) for e in events] == [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)]


def test_half_open_allows_only_n_probes_and_needs_all_to_succeed():
    b, clock, _ = make(failures=1, half_open_probes=3, open_for=10)
    fail(b)
    clock.advance(10)
    probes = [b.acquire() for _ in range(3)]
    assert None not in probes
    assert b.acquire() is None  # a fourth concurrent probe is refused
    b.record_success(probes[0])
    b.record_success(probes[1])
    assert b.state is HALF
    b.record_success(probes[2])
    assert b.state is CLOSED


def test_probe_failure_reopens_with_backoff_capped():
    b, clock, _ = make(failures=1, open_for=10, open_backoff=2.0, max_open_for=25)
    fail(b)
    assert b.retry_in() == 10
    for expected in (20, 25, 25):
        clock.advance(b.retry_in())
        fail(b)  # the probe fails
        assert b.state is OPEN
        assert b.retry_in() == expected
    clock.advance(25)
    succeed(b)
    assert b.state is CLOSED
    fail(b)
    assert b.retry_in() == 10  # a successful close forgets the trips


def test_cancelled_probe_frees_its_slot():
    b, clock, _ = make(failures=1, open_for=1)
    fail(b)
    clock.advance(1)
    permit = b.acquire()
    assert b.acquire() is None
    b.release(permit)
    assert b.acquire() is not None


def test_stale_results_are_ignored():
    b, clock, _ = make(failures=2, open_for=5)
    slow = b.acquire()  # started while closed
    fail(b, 2)
    assert b.state is OPEN
    clock.advance(5)
    probe = b.acquire()
    b.record_success(slow)  # late answer from before the trip: not a probe
    assert b.state is HALF
    b.record_failure(slow)
    assert b.state is HALF
    b.record_success(probe)
    assert b.state is CLOSED


def test_ratio_mode_needs_minimum_throughput():
    b, _, _ = make(mode="ratio", failure_ratio=0.5, minimum_calls=10, window=30)
    fail(b, 9)  # 100% failures but under the minimum
    assert b.state is CLOSED
    fail(b)
    assert b.state is OPEN


def test_ratio_mode_trips_at_the_ratio():
    b, _, events = make(mode="ratio", failure_ratio=0.5, minimum_calls=10, window=30)
    succeed(b, 6)
    fail(b, 5)  # 5/11 < 0.5
    assert b.state is CLOSED
    fail(b)  # 6/12 = 0.5
    assert b.state is OPEN
    assert "6/12 calls failed" in events[-1].reason


def test_ratio_window_slides():
    b, clock, _ = make(mode="ratio", failure_ratio=0.5, minimum_calls=4, window=10)
    fail(b, 3)
    clock.advance(11)  # those failures left the window
    succeed(b, 3)
    fail(b)
    assert b.state is CLOSED
    assert b.stats().window_failures == 1


def test_slow_calls_count_as_failures():
    b, _, _ = make(failures=2, slow_call=1.0)
    succeed(b, 1, duration=0.5)
    succeed(b, 2, duration=1.5)
    assert b.state is OPEN


def test_isolate_holds_open_until_reset():
    b, clock, events = make()
    b.isolate()
    assert b.state is ISOLATED
    assert b.acquire() is None
    clock.advance(10_000)
    assert b.acquire() is None
    b.reset()
    assert b.state is CLOSED
    assert b.acquire() is not None
    assert [e.new for e in events] == [ISOLATED, CLOSED]


def test_reconfigure_thresholds_keeps_state():
    b, clock, _ = make(failures=5, open_for=60)
    fail(b, 3)
    result = b.reconfigure(breaker_policy(failures=4, open_for=60))
    assert result.kept_state
    assert result.changed == ("failures",)
    fail(b)  # 4th consecutive failure under the new threshold
    assert b.state is OPEN
    clock.advance(10)
    result = b.reconfigure(breaker_policy(failures=4, open_for=20))
    assert result.kept_state
    assert b.state is OPEN
    assert b.retry_in() == 10  # recomputed from when it opened


def test_reconfigure_ratio_window_keeps_counts():
    b, _, _ = make(mode="ratio", minimum_calls=5, window=30)
    fail(b, 4)
    assert b.reconfigure(breaker_policy(mode="ratio", minimum_calls=5, window=60)).kept_state
    fail(b)
    assert b.state is OPEN


def test_mode_change_resets_and_says_so():
    b, _, events = make(failures=1)
    fail(b)
    assert b.state is OPEN
    result = b.reconfigure(breaker_policy(mode="ratio"))
    assert not result.kept_state
    assert "mode changed from consecutive to ratio" in result.reason
    assert b.state is CLOSED
    assert events[-1].new is CLOSED


def test_isolated_stays_isolated_through_mode_change():
    b, _, _ = make()
    b.isolate()
    b.reconfigure(breaker_policy(mode="ratio"))
    assert b.state is ISOLATED
