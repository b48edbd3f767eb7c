"""Pool alert rules with a fake clock: a blip never pages, a held breach does, and clears."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gladd.observe.pool import AlertChange, Level, PoolAlerts, PoolMonitor, PoolSample
from gladd.policies import Policies
from gladd.policies.model import PoolAlertPolicy
from gladd.store.base import PoolStats

POLICY = PoolAlertPolicy.model_validate(
    {
        "interval": "1s",
        "utilization": {"warn": 0.8, "critical": 0.95, "for": "30s"},
        "acquire_wait": {"warn": "100ms", "critical": "1s", "for": "10s"},
    }
)


def stats(in_use: int, *, max_size: int = 10, **more: object) -> PoolStats:
    return PoolStats(
        backend="postgresql",
        pooled=True,
        open=True,
        size=max_size,
        idle=max_size - in_use,
        in_use=in_use,
        max_size=max_size,
        **more,  # type: ignore[arg-type]
    )


def sample(in_use: int, wait: float = 0.0) -> PoolSample:
    return PoolSample(stats=stats(in_use), acquire_wait=wait)


def feed(alerts: PoolAlerts, points: list[tuple[float, PoolSample]]) -> list[AlertChange]:
    changes = []
    for now, s in points:
        changes += alerts.observe(s, now)
    return changes


def test_a_blip_over_the_threshold_does_not_page() -> None:
    alerts = PoolAlerts(POLICY)
    changes = feed(alerts, [(0, sample(10)), (10, sample(10)), (20, sample(2)), (25, sample(10))])
    assert changes == []
    assert alerts.level() is Level.OK


def test_warn_fires_once_held_for_the_duration_then_critical() -> None:
    alerts = PoolAlerts(POLICY)
    assert feed(alerts, [(0, sample(8)), (29.9, sample(9))]) == []
    (warn,) = alerts.observe(sample(9), 30.0)
    assert (warn.rule, warn.old, warn.new) == ("utilization", Level.OK, Level.WARN)
    assert warn.message() == "pool utilisation warn: 90% ≥ 80% for 30s (was ok)"

    assert alerts.observe(sample(10), 31.0) == []  # critical must hold its own 30 s
    (critical,) = alerts.observe(sample(10), 61.0)
    assert critical.new is Level.CRITICAL
    assert critical.message() == "pool utilisation critical: 100% ≥ 95% for 30s (was warn)"
    assert [a.describe() for a in alerts.firing()] == ["utilization critical (100%)"]


def test_recovery_as_soon_as_under_warn_and_it_must_hold_again_to_fire() -> None:
    alerts = PoolAlerts(POLICY)
    feed(alerts, [(0, sample(10)), (30, sample(10)), (60, sample(10))])
    assert alerts.level("utilization") is Level.CRITICAL

    (down,) = alerts.observe(sample(9), 61)  # under critical, still over warn
    assert down.new is Level.WARN
    assert not down.worse
    assert not down.recovered
    assert down.message() == "pool utilisation down to warn: 90%, under critical (was critical)"

    (back,) = alerts.observe(sample(3), 62)
    assert back.recovered
    assert back.message() == "pool utilisation back to normal: 30% < warn 80% (was warn)"
    assert alerts.firing() == []
    assert alerts.observe(sample(9), 63) == []  # a fresh breach waits its `for` again


def test_acquire_wait_rule_uses_its_own_thresholds_and_duration() -> None:
    alerts = PoolAlerts(POLICY)
    (warn,) = feed(alerts, [(0, sample(1, 0.2)), (10, sample(1, 0.3))])
    assert (warn.rule, warn.new) == ("acquire_wait", Level.WARN)
    assert warn.message() == "pool acquire wait warn: 300ms ≥ 100ms for 10s (was ok)"
    (critical,) = feed(alerts, [(11, sample(1, 1.5)), (21, sample(1, 2.0))])
    assert critical.new is Level.CRITICAL
    assert alerts.level("utilization") is Level.OK


def test_zero_duration_fires_on_the_first_sample() -> None:
    policy = POLICY.model_copy(
        update={"utilization": POLICY.utilization.model_copy(update={"hold": 0.0})}
    )
    (change,) = PoolAlerts(policy).observe(sample(10), 0)
    assert change.new is Level.CRITICAL


def test_a_reload_changes_thresholds_and_keeps_how_long_they_held() -> None:
    alerts = PoolAlerts(POLICY)
    alerts.observe(sample(7), 0)
    lower = POLICY.model_copy(
        update={"utilization": POLICY.utilization.model_copy(update={"warn": 0.5})}
    )
    alerts.configure(lower)
    alerts.observe(sample(7), 1)
    (warn,) = alerts.observe(sample(7), 31)
    assert warn.new is Level.WARN


def test_the_sample_wait_is_the_mean_of_the_interval_or_a_longer_current_wait() -> None:
    before = stats(1, acquisitions=10, acquire_wait_total=1.0)
    after = stats(1, acquisitions=14, acquire_wait_total=3.0)
    assert PoolSample.between(before, after).acquire_wait == pytest.approx(0.5)
    stuck = replace(after, acquisitions=10, acquire_wait_total=1.0, longest_wait=4.0, waiting=1)
    assert PoolSample.between(before, stuck).acquire_wait == 4.0
    assert PoolSample.between(None, after).acquire_wait == 0.0


class FakeStore:
    url = "postgresql://db/gladd"

    def __init__(self) -> None:
        self.now = stats(0)

    def pool_stats(self) -> PoolStats:
        return self.now


def test_monitor_logs_raise_and_recovery_with_levels(logs: list[tuple[str, str]]) -> None:
    store, clock = FakeStore(), [0.0]
    policies = Policies(pool_alerts=POLICY)
    monitor = PoolMonitor(store, lambda: policies, clock=lambda: clock[0])  # type: ignore[arg-type]
    for t, in_use in ((0.0, 9), (30.0, 10), (60.0, 10)):
        clock[0], store.now = t, stats(in_use, waiting=3)
        monitor.sample()
    store.now = stats(1)
    clock[0] = 61.0
    monitor.sample()

    assert [level for level, _ in logs] == ["WARNING", "ERROR", "INFO"]
    assert logs[1][1] == (
        "pool utilisation critical: 100% ≥ 95% for 30s (was warn) "
        "[10 in use, 0 idle of max 10, 3 waiting] at postgresql://db/gladd"
    )
    assert logs[2][1].startswith("pool utilisation back to normal: 10% < warn 80%")
    assert monitor.raised == {("utilization", Level.WARN): 1, ("utilization", Level.CRITICAL): 1}


def test_monitor_does_not_judge_a_single_connection_as_a_pool() -> None:
    store = FakeStore()
    store.now = replace(stats(1, max_size=1), backend="sqlite", pooled=False)
    monitor = PoolMonitor(store, Policies, clock=lambda: 100.0)  # type: ignore[arg-type]
    assert monitor.sample() == []
    assert monitor.latest is not None
    assert monitor.latest.utilization == 1.0
    assert monitor.alerts.level() is Level.OK
