"""The shared retry budget: a burst cannot buy more retries than the ratio allows."""

from __future__ import annotations

from gladd.policies.model import BudgetPolicy
from gladd.resilience.budget import RetryBudget
from gladd.resilience.clock import FakeClock


def budget(ratio=0.2, window="10s", min_per_second=1.0):
    clock = FakeClock()
    policy = BudgetPolicy.model_validate(
        {"ratio": ratio, "window": window, "min_per_second": min_per_second}
    )
    return RetryBudget(policy, name="b", clock=clock), clock


def spend_all(b):
    n = 0
    while b.try_spend():
        n += 1
        assert n < 10_000
    return n


def test_burst_gets_ratio_of_calls():
    b, _ = budget(ratio=0.2, min_per_second=0.0)
    for _ in range(500):
        b.record_call()
    assert spend_all(b) == 100  # 20% of 500
    assert not b.try_spend()
    assert b.stats().retries == 100


def test_minimum_rate_lets_a_quiet_service_retry():
    b, _ = budget(ratio=0.2, window="10s", min_per_second=1.0)
    b.record_call()
    assert spend_all(b) == 10  # 1/s over a 10 s window, more than 20% of 1 call


def test_budget_recovers_as_the_window_slides():
    b, clock = budget(ratio=0.5, min_per_second=0.0)
    for _ in range(10):
        b.record_call()
    assert spend_all(b) == 5
    clock.advance(5)
    for _ in range(10):
        b.record_call()
    assert spend_all(b) == 5  # (20 calls x 0.5) - 5 already spent
    clock.advance(5.5)  # the first half left the window
    assert b.stats().calls == 10
    assert spend_all(b) == 0  # still 5 retries in the window against 10 x 0.5
    clock.advance(5)
    assert b.stats() == type(b.stats())(calls=0, retries=0, allowed=0.0)


def test_reconfigure_keeps_counts():
    b, _ = budget(ratio=0.1, min_per_second=0.0)
    for _ in range(100):
        b.record_call()
    assert spend_all(b) == 10
    new = BudgetPolicy.model_validate({"ratio": 0.2, "window": "20s", "min_per_second": 0.0})
    result = b.reconfigure(new)
    assert result.kept_state
    assert set(result.changed) == {"ratio", "window"}
    assert spend_all(b) == 10  # 20% of the same 100 calls, 10 already spent
