"""gladd's own retries at its store: jittered, bounded, following database.retry."""

from __future__ import annotations

import random

from gladd.policies import parse_policies
from gladd.resilience.backoff import Backoff
from gladd.resilience.pacing import STORE_BACKOFF, Pacer, capped, store_backoff


def delays(pacer: Pacer, n: int) -> list[float]:
    return [pacer.next_delay() for _ in range(n)]


def test_the_default_store_backoff_is_jittered_and_capped() -> None:
    pacer = Pacer(lambda: STORE_BACKOFF, random.Random(7))
    seen = delays(pacer, 12)
    ceilings = [STORE_BACKOFF.ceiling(n) for n in range(1, 13)]
    assert all(0 <= d <= c for d, c in zip(seen, ceilings, strict=True))
    assert ceilings[-1] == 30.0
    assert seen != ceilings  # not the bare exponential: jittered
    assert len(set(seen)) == len(seen)


def test_two_nodes_do_not_retry_in_lockstep() -> None:
    one = delays(Pacer(lambda: STORE_BACKOFF, random.Random(1)), 8)
    two = delays(Pacer(lambda: STORE_BACKOFF, random.Random(2)), 8)
    assert all(abs(a - b) > 1e-9 for a, b in zip(one, two, strict=True))


def test_a_success_starts_the_schedule_over() -> None:
    fixed = Backoff(kind="exponential", base=1.0, max=60.0, jitter="none")
    pacer = Pacer(lambda: fixed, random.Random(0))
    assert delays(pacer, 4) == [1.0, 2.0, 4.0, 8.0]
    pacer.succeeded()
    assert delays(pacer, 2) == [1.0, 2.0]


def test_the_schedule_is_database_retry_s_and_follows_a_reload() -> None:
    text = b"""
[database]
retry = "db"

[retry.db]
backoff = "exponential"
base_delay = "100ms"
max_delay = "2s"
jitter = "equal"
"""
    policies = parse_policies(text, source="test").policies
    assert store_backoff(policies) == Backoff(
        kind="exponential", base=0.1, max=2.0, multiplier=2.0, jitter="equal"
    )
    current = [policies]
    pacer = Pacer(lambda: store_backoff(current[0]), random.Random(3))
    seen = delays(pacer, 10)
    assert all(0 < d <= 2.0 for d in seen)
    assert seen[-1] >= 1.0  # equal jitter: at least half the capped 2s
    current[0] = parse_policies(b"", source="test").policies  # database.retry unset
    assert store_backoff(current[0]) is STORE_BACKOFF
    assert pacer.next_delay() <= 30.0


def test_a_capped_schedule_never_waits_past_its_ceiling() -> None:
    backoff = capped(STORE_BACKOFF, 2.0)
    assert backoff.max == 2.0
    assert backoff.jitter == "full"
    assert capped(STORE_BACKOFF, 60.0) is STORE_BACKOFF
    assert capped(STORE_BACKOFF, 0.1).base == 0.1
    pacer = Pacer(lambda: backoff, random.Random(4))
    assert all(0 <= d <= 2.0 for d in delays(pacer, 20))
