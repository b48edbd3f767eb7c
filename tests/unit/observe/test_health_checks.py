"""Each health check's status rules, and one round of the checker over a memory store."""

from __future__ import annotations

import pytest

from gladd.executor.statistics import ExecutorStatistics
from gladd.observe.health import Status
from gladd.observe.health_checks import (
    Recent,
    breaker_states_check,
    breakers_check,
    connections_check,
    database_check,
    executor_checks,
    lag_check,
    pool_alerts_check,
    reload_check,
)
from gladd.observe.pool import Alert, Level
from gladd.observe.reloads import Reloads
from gladd.policies import Policies
from gladd.resilience.breaker import BreakerStats
from gladd.resilience.state import BreakerState
from gladd.store.base import PoolStats
from gladd.store.memory import MemoryStore
from tests.unit.observe._build import FakeExecutor, Observed

PG = PoolStats(
    backend="postgresql", pooled=True, open=True, size=4, idle=1, in_use=3, max_size=10, waiting=2
)


def test_database_check_fails_when_the_ping_fails() -> None:
    failed = database_check(None, "connection refused", query_timeout=5, at=0)
    assert (failed.status, failed.output) == (Status.FAIL, "connection refused")
    assert database_check(0.0021, None, query_timeout=5, at=0).observed_value == 2.1
    slow = database_check(3.0, None, query_timeout=5, at=0)
    assert slow.status is Status.WARN
    assert slow.output == "slow: over half the query_timeout (5s)"


def test_connections_check_says_what_the_store_has() -> None:
    assert connections_check(PG, at=0).output == (
        "postgresql pool: 3 in use, 1 idle, size 4 of max 10, 2 waiting"
    )
    sqlite = PoolStats(
        backend="sqlite", pooled=False, open=True, size=1, idle=0, in_use=1, max_size=1
    )
    assert connections_check(sqlite, at=0).output == (
        "sqlite: one connection, not a pool (busy, 0 queued)"
    )


def test_pool_alerts_warn_then_fail_and_do_not_apply_to_sqlite() -> None:
    warn = Alert(rule="utilization", level=Level.WARN, value=0.85, since=0)
    critical = Alert(rule="acquire_wait", level=Level.CRITICAL, value=1.5, since=0)
    assert pool_alerts_check([], PG, at=0).status is Status.PASS
    assert pool_alerts_check([warn], PG, at=0).status is Status.WARN
    both = pool_alerts_check([warn, critical], PG, at=0)
    assert both.status is Status.FAIL
    assert both.output == "utilization warn (85%), acquire_wait critical (1.5s)"
    assert not both.affects_readiness
    sqlite = PoolStats(
        backend="sqlite", pooled=False, open=True, size=1, idle=1, in_use=0, max_size=1
    )
    assert pool_alerts_check([], sqlite, at=0).output == (
        "sqlite has no pool: pool alert rules do not apply"
    )


def breaker(state: BreakerState, retry_in: float | None = None) -> BreakerStats:
    return BreakerStats(
        name="b",
        state=state,
        consecutive_failures=0,
        window_successes=0,
        window_failures=0,
        trips=0,
        opened_total=0,
        retry_in=retry_in,
    )


def test_open_breakers_are_named_and_warn() -> None:
    closed = breakers_check({("http", "github"): breaker(BreakerState.CLOSED)}, at=0)
    assert (closed.status, closed.output) == (Status.PASS, "1 breaker(s), all closed")
    tripped = breakers_check(
        {
            ("http", "github"): breaker(BreakerState.OPEN, 42),
            ("http", "crm"): breaker(BreakerState.HALF_OPEN),
            ("db", "x"): breaker(BreakerState.CLOSED),
        },
        at=0,
    )
    assert tripped.status is Status.WARN
    assert tripped.observed_value == 2
    assert tripped.output == "http for crm (half_open), http for github (open, probe in 42s)"


def test_every_breaker_is_listed_with_its_state_and_that_alone_never_warns() -> None:
    assert breaker_states_check({}, at=0).output == (
        "no breaker built yet (each is built on first use)"
    )
    listed = breaker_states_check(
        {
            ("http", "github"): breaker(BreakerState.OPEN, 42),
            ("http", "crm"): breaker(BreakerState.HALF_OPEN),
            ("db", "x"): breaker(BreakerState.CLOSED),
            ("http", "legacy"): breaker(BreakerState.ISOLATED),
        },
        at=0,
    )
    assert (listed.key, listed.status) == ("breakers:state", Status.PASS)
    assert listed.observed_value == [
        {"breaker": "db", "service": "x", "state": "closed", "probeIn": None},
        {"breaker": "http", "service": "crm", "state": "half_open", "probeIn": None},
        {"breaker": "http", "service": "github", "state": "open", "probeIn": 42},
        {"breaker": "http", "service": "legacy", "state": "isolated", "probeIn": None},
    ]
    assert listed.output == (
        "db for x (closed), http for crm (half_open), http for github (open), "
        "http for legacy (isolated)"
    )


def test_executor_checks_warn_on_dead_tasks_and_timeouts_over_five_percent() -> None:
    def by_key(**kw: object) -> dict[str, object]:
        checks = executor_checks(running=2, concurrency=10, queued=7, at=0, **kw)  # type: ignore[arg-type]
        return {c.key: c for c in checks}

    calm = by_key(recent=(0, 1, 100))
    assert all(c.status is Status.PASS for c in calm.values())  # type: ignore[attr-defined]
    assert calm["executor:running"].output == "2 of 10 slots"  # type: ignore[attr-defined]
    assert calm["executor:queued"].observed_value == 7  # type: ignore[attr-defined]
    bad = by_key(recent=(1, 5, 100))
    assert bad["executor:deadLastHour"].status is Status.WARN  # type: ignore[attr-defined]
    assert bad["executor:timeoutRate"].status is Status.WARN  # type: ignore[attr-defined]
    assert bad["executor:timeoutRate"].observed_value == 0.05  # type: ignore[attr-defined]


def test_lag_check_warns_at_the_threshold() -> None:
    assert lag_check(0.05, 0.1, at=0).status is Status.PASS
    over = lag_check(0.25, 0.1, at=0)
    assert (over.status, over.observed_value, over.observed_unit) == (Status.WARN, 250.0, "ms")


def test_reload_check_reports_the_last_reload_that_did_something() -> None:
    reloads = Reloads()
    reloads.record("start", "applied", generation=1, at=0)
    reloads.record("file", "rejected", generation=1, at=1, detail="p.toml:3: bad")
    reloads.record("poll", "unchanged", generation=1, at=2)
    check = reload_check(reloads.last, at=0)
    assert check.output == "rejected (file), generation 1: p.toml:3: bad"
    assert reloads.last_success is not None
    assert reloads.last_success.trigger == "start"
    assert dict(reloads.counts) == {
        ("start", "applied"): 1,
        ("file", "rejected"): 1,
        ("poll", "unchanged"): 1,
    }


def test_recent_counts_growth_within_the_window_only() -> None:
    recent = Recent(window=60)
    assert recent.add(0, (1, 0)) == (1, 0)  # counters start from zero
    assert recent.add(30, (3, 1)) == (3, 1)
    assert recent.add(61, (4, 1)) == (3, 1)  # the zero sample aged out
    assert recent.add(200, (4, 1)) == (0, 0)


@pytest.mark.anyio
async def test_one_round_publishes_every_check_and_they_pass() -> None:
    store = MemoryStore()
    await store.open()
    observed = Observed(store=store, policies=Policies(), executor=FakeExecutor(running=1))
    await observed.checker.check()
    report = observed.board.report()
    assert set(report["checks"]) == {
        "database:responseTime",
        "database:connections",
        "pool:alerts",
        "breakers:open",
        "breakers:state",
        "executor:running",
        "executor:queued",
        "executor:deadLastHour",
        "executor:timeoutRate",
        "policies:reload",
        "schedules:last_run",
        "flow:pauses",
        "eventloop:lag",
    }
    assert report["status"] == "pass", report
    assert observed.board.ready() == (True, "ready")

    assert observed.executor is not None
    observed.executor.stats = ExecutorStatistics(succeeded=3, failed=1, dead=1)
    await store.close()
    await observed.checker.check()
    assert observed.status_of("executor:deadLastHour") == "warn"
    assert observed.status_of("database:responseTime") == "fail"
    assert observed.board.report()["status"] == "fail"
    assert observed.pings[-1] is not None  # the daemon's store health hears of it
    assert "the store is not open" in str(observed.pings[-1])


def test_a_schedule_whose_last_run_died_warns_naming_it() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    from gladd.observe.health_checks import schedules_check  # noqa: PLC0415
    from gladd.policies import parse_policies  # noqa: PLC0415
    from gladd.store.base import ScheduleState, TaskState  # noqa: PLC0415

    rules = parse_policies(
        b'[schedules.nightly]\ncron = "0 3 * * *"\nkind = "gladd.noop"\n'
        b'[schedules.hourly]\ncron = "0 * * * *"\nkind = "gladd.noop"\n',
        source="p",
    ).policies
    at = datetime(2030, 1, 1, tzinfo=UTC)

    def state(name: str, last: TaskState, task: int) -> ScheduleState:
        return ScheduleState(
            name=name, spec="s", last_tick=at, last_task=task, last_fired_at=at, last_state=last
        )

    states = {
        "nightly": state("nightly", TaskState.DEAD, 17),
        "hourly": state("hourly", TaskState.SUCCEEDED, 18),
        "removed": state("removed", TaskState.DEAD, 19),  # not in the policies: not counted
    }
    check = schedules_check(rules, states, at=0.0)
    assert (check.status.value, check.output) == (
        "warn",
        "schedule nightly: its last run, task 17, died",
    )
    states["nightly"] = state("nightly", TaskState.SUCCEEDED, 20)
    assert schedules_check(rules, states, at=0.0).status.value == "pass"
