"""Backoff schedules and the total deadline: property tests over every kind and jitter."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from gladd.resilience.backoff import Backoff
from gladd.resilience.retry import GiveUp, Retry, RetryPlan, decide

from ._policies import retry_policy

kinds = st.sampled_from(["constant", "linear", "exponential", "decorrelated"])
jitters = st.sampled_from(["none", "full", "equal"])
bases = st.floats(min_value=0.0, max_value=5.0)
spans = st.floats(min_value=0.0, max_value=100.0)
multipliers = st.floats(min_value=1.0, max_value=100.0)
retries = st.integers(min_value=1, max_value=2000)


@given(kinds, jitters, bases, spans, multipliers, retries, st.integers())
def test_every_delay_is_within_zero_and_max(kind, jitter, base, span, mult, n, seed):
    b = Backoff(kind=kind, base=base, max=base + span, multiplier=mult, jitter=jitter)
    rng = random.Random(seed)
    previous = 0.0
    for retry in range(1, min(n, 50) + 1):
        delay = b.delay(retry, previous, rng)
        assert 0.0 <= delay <= b.max
        previous = delay
    assert 0.0 <= b.delay(n, previous, rng) <= b.max


@given(st.sampled_from(["constant", "linear", "exponential"]), bases, spans, multipliers)
def test_unjittered_schedule_is_monotonic_and_capped(kind, base, span, mult):
    b = Backoff(kind=kind, base=base, max=base + span, multiplier=mult, jitter="none")
    delays = [b.delay(n, 0.0, random.Random(0)) for n in range(1, 200)]
    assert delays == sorted(delays)
    assert all(d <= b.max for d in delays)
    assert delays[0] == min(base, b.max)


@given(kinds, bases, spans, multipliers, retries, st.integers())
def test_jitter_ranges(kind, base, span, mult, n, seed):
    full = Backoff(kind="exponential", base=base, max=base + span, multiplier=mult, jitter="full")
    equal = Backoff(kind="exponential", base=base, max=base + span, multiplier=mult, jitter="equal")
    ceiling = full.ceiling(n)
    assert 0.0 <= full.delay(n, 0.0, random.Random(seed)) <= ceiling
    assert ceiling / 2 <= equal.delay(n, 0.0, random.Random(seed)) <= ceiling


@given(bases, spans, st.floats(min_value=0.0, max_value=200.0), st.integers())
def test_decorrelated_stays_between_base_and_max(base, span, previous, seed):
    b = Backoff(kind="decorrelated", base=base, max=base + span)
    delay = b.delay(3, previous, random.Random(seed))
    assert base <= delay <= b.max


def test_same_seed_same_schedule():
    b = Backoff(kind="exponential", base=0.1, max=10.0, jitter="full")
    one = [b.delay(n, 0.0, random.Random(7)) for n in range(1, 10)]
    two = [b.delay(n, 0.0, random.Random(7)) for n in range(1, 10)]
    assert one == two


def test_exponential_values_exactly():
    b = Backoff(kind="exponential", base=0.1, max=1.0, multiplier=2.0, jitter="none")
    assert [round(b.delay(n, 0.0, random.Random()), 6) for n in range(1, 7)] == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]


@given(
    st.integers(min_value=1, max_value=100),
    st.floats(min_value=0.01, max_value=100.0),
    st.floats(min_value=0.0, max_value=30.0),
    st.lists(st.floats(min_value=0.0, max_value=20.0), min_size=100, max_size=100),
    st.integers(),
)
def test_total_deadline_is_never_overrun_by_a_sleep(attempts, deadline, base, durations, seed):
    """Sum of attempt durations and sleeps, when a retry is decided, stays under the deadline."""
    plan = RetryPlan.from_policy(
        "p",
        retry_policy(attempts=attempts, deadline=deadline, base_delay=base, max_delay=base + 30),
    )
    rng = random.Random(seed)
    elapsed, previous, attempt = 0.0, 0.0, 1
    while True:
        elapsed += durations[attempt - 1]
        decision = decide(
            plan,
            attempt=attempt,
            error=ConnectionResetError(),
            elapsed=elapsed,
            previous_delay=previous,
            rng=rng,
        )
        if isinstance(decision, GiveUp):
            assert decision.reason in {"attempts", "deadline"}
            break
        assert isinstance(decision, Retry)
        assert elapsed + decision.delay < deadline
        elapsed += decision.delay
        previous = decision.delay
        attempt += 1
    assert attempt <= attempts
