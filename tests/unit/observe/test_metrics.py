"""``/metrics``: names, labels and values a dashboard relies on, and promtool's approval."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gladd.errors import TaskTimeout
from gladd.executor.outcomes import task_outcome
from gladd.executor.statistics import ExecutorStatistics
from gladd.instruments.activity import Activity
from gladd.observe.lag import Blocked
from gladd.observe.metrics import CONTENT_TYPE
from gladd.policies import Policies
from gladd.resilience.events import (
    BreakerStateChanged,
    CallRejected,
    CallSucceeded,
    FallbackMissed,
    FallbackServed,
    GaveUp,
    RetryScheduled,
    TimedOut,
)
from gladd.resilience.state import BreakerState
from gladd.store import Cancelled, Failed, NewTask, Released, Succeeded, TaskError
from gladd.store.base import PoolStats
from gladd.store.memory import MemoryStore
from tests.unit.observe._build import FakeExecutor, Observed
from tests.unit.observe._promtool import promtool_check

POLICIES = Policies.model_validate(
    {
        "retry": {"http": {}, "db": {}},
        "breaker": {"http": {"failures": 2}},
        "services": {"github": {"retry": "http", "breaker": "http"}, "crm": {"breaker": "http"}},
        "pool_alerts": {"utilization": {"warn": 0.5, "critical": 0.9, "for": "0s"}},
    }
)


class CrowdedStore(MemoryStore):
    def pool_stats(self) -> PoolStats:
        return PoolStats(
            backend="postgresql",
            pooled=True,
            open=True,
            size=10,
            idle=0,
            in_use=10,
            max_size=10,
            waiting=4,
            acquisitions=120,
            acquire_wait_total=3.5,
            longest_wait=0.7,
        )


async def busy_daemon() -> Observed:
    store = CrowdedStore()
    await store.open()
    await store.enqueue(NewTask(kind="crm.sync"), now=datetime(2026, 1, 1, tzinfo=UTC))
    observed = Observed(store=store, policies=POLICIES, executor=FakeExecutor(running=3))
    assert observed.executor is not None
    observed.executor.stats = ExecutorStatistics(
        claimed=40, succeeded=30, failed=6, dead=2, timeouts=3, released=2, rescued=1, fenced=1
    )
    sink = observed.counters
    for _ in range(9):
        sink(CallSucceeded(policy="http", target="github", attempts=1))
    sink(CallSucceeded(policy="http", target="github", attempts=3))
    sink(
        RetryScheduled(policy="http", target="github", attempt=1, delay=0.1, cause="5xx", error="e")
    )
    sink(
        RetryScheduled(policy="http", target="github", attempt=2, delay=0.2, cause="5xx", error="e")
    )
    sink(
        GaveUp(
            policy="http", target="github", attempts=3, reason="attempts", cause="5xx", error="e"
        )
    )
    sink(CallSucceeded(policy="db", target="database", attempts=1))
    sink(TimedOut(policy="db", target="database", attempt=1, scope="attempt", after=5.0))
    sink(
        GaveUp(policy="db", target="database", attempts=1, reason="attempts", cause=None, error="t")
    )
    sink(
        CallRejected(
            policy="http", target="crm", breaker="http", state=BreakerState.OPEN, retry_in=3
        )
    )
    sink(FallbackServed(policy="http", target="crm", kind="cache", age=2.0))
    sink(FallbackMissed(policy="http", target="crm", reason="empty"))
    observed.resilience.service("github")
    observed.resilience.service("crm")
    breakers = observed.resilience.breakers()
    breakers["http", "crm"].isolate()
    sink(
        BreakerStateChanged(
            policy="http", target="crm", old=BreakerState.CLOSED, new=BreakerState.OPEN, reason="x"
        )
    )
    observed.pool.sample()
    observed.lag.record(0.002)
    observed.lag.record(
        0.4, Blocked(lag=0.4, culprit=Activity(what="task", name="crm.sync"), where="x.py:1")
    )
    observed.reloads.record("file", "rejected", generation=1, at=1_700_000_000.0, detail="bad")
    observed.metrics.observe_task("crm.sync", "succeeded", 0.2)
    observed.metrics.observe_task("crm.sync", "timeout", 900.0)
    await observed.checker.check()
    return observed


def samples(body: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    matches = [v for lbl, v in found[name] if all(lbl.get(k) == x for k, x in labels.items())]
    assert len(matches) == 1, (name, labels, found.get(name))
    return float(matches[0])


@pytest.mark.anyio
async def test_every_figure_the_origin_document_watches_is_there() -> None:
    observed = await busy_daemon()
    body, content_type = observed.metrics.render()
    assert content_type == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    m = samples(body)

    # retry success rate and totals
    assert value(m, "gladd_retries_total", policy="http", service="github") == 2
    assert value(m, "gladd_retried_calls_total", service="github", outcome="succeeded") == 1
    assert value(m, "gladd_retried_calls_total", service="github", outcome="failed") == 1
    assert value(m, "gladd_retry_success_ratio", policy="http", service="github") == 0.5
    assert value(m, "gladd_calls_total", service="github", outcome="succeeded") == 10
    # pool utilisation, degraded / critical
    assert value(m, "gladd_db_pool_utilization_ratio") == 1.0
    assert value(m, "gladd_db_pool_degraded") == 1
    assert value(m, "gladd_db_pool_critical") == 1
    assert value(m, "gladd_db_pool_alert", rule="utilization", level="critical") == 1
    assert value(m, "gladd_db_pool_alerts_total", rule="utilization", level="critical") == 1
    assert value(m, "gladd_db_pool_connections", state="in_use") == 10
    assert value(m, "gladd_db_pool_waiting") == 4
    assert value(m, "gladd_db_pool_acquire_wait_seconds_total") == 3.5
    # breaker state and open count
    assert value(m, "gladd_breakers_open") == 1
    assert value(m, "gladd_breaker_state", breaker="http", service="crm", state="isolated") == 1
    assert value(m, "gladd_breaker_state", breaker="http", service="github", state="closed") == 1
    assert value(m, "gladd_breaker_transitions_total", service="crm", state="open") == 1
    # fallback / cache hit rate
    assert value(m, "gladd_fallbacks_total", service="crm", outcome="cache_hit") == 1
    assert value(m, "gladd_fallback_cache_hit_ratio", service="crm") == 0.5
    # task timeout rate, query timeout rate
    assert value(m, "gladd_task_timeout_ratio") == pytest.approx(3 / 36)
    assert value(m, "gladd_db_query_timeout_ratio") == 0.5
    assert value(m, "gladd_call_timeouts_total", service="database", scope="attempt") == 1
    # tasks by kind and outcome, rescues, fencing
    assert value(m, "gladd_task_duration_seconds_count", kind="crm.sync", outcome="timeout") == 1
    assert value(m, "gladd_task_outcomes_total", outcome="dead") == 2
    assert value(m, "gladd_task_outcomes_total", outcome="failed") == 4
    assert value(m, "gladd_task_rescues_total") == 1
    assert value(m, "gladd_task_fencing_rejections_total") == 1
    assert value(m, "gladd_tasks_running") == 3
    assert value(m, "gladd_tasks", kind="crm.sync", state="pending") == 1
    assert value(m, "gladd_tasks", kind="crm.sync", state="dead") == 0
    # reloads and generation
    assert value(m, "gladd_reloads_total", trigger="file", outcome="rejected") == 1
    assert value(m, "gladd_reload_last_success") == 0
    assert value(m, "gladd_policies_generation") == 1
    # event-loop lag; process resources
    assert value(m, "gladd_event_loop_lag_seconds_count") == 2
    assert value(m, "gladd_event_loop_lag_seconds_bucket", le="0.5") == 2
    assert value(m, "gladd_event_loop_blocks_total", kind="crm.sync") == 1
    assert value(m, "gladd_process_open_fds") > 0
    assert value(m, "gladd_process_resident_memory_bytes") > 0
    # health itself
    assert value(m, "gladd_health_status", status="fail") == 1
    assert value(m, "gladd_build_info", version="9.9.9", node="node-a") == 1


@pytest.mark.anyio
async def test_every_name_is_gladd_prefixed_and_promtool_accepts_the_scrape() -> None:
    observed = await busy_daemon()
    body, _ = observed.metrics.render()
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert all(name.startswith("gladd_") for name in names), names
    assert b"_created" not in body
    promtool_check(body)


@pytest.mark.anyio
async def test_an_idle_daemon_scrape_is_valid_too() -> None:
    store = MemoryStore()
    observed = Observed(store=store, policies=Policies())
    body, _ = observed.metrics.render()
    m = samples(body)
    assert value(m, "gladd_db_info", backend="memory") == 1
    assert "gladd_tasks_running" not in m  # no executor yet: absent, not a made-up zero
    promtool_check(body)


def test_task_outcome_labels() -> None:
    now = datetime.now(UTC)
    error = TaskError(type="E", message="m", attempt=1, at=now)
    assert task_outcome(Succeeded(id=1, token=1)) == "succeeded"
    assert task_outcome(Failed(id=1, token=1, error=error, retry_at=now)) == "failed"
    assert task_outcome(Failed(id=1, token=1, error=error, retry_at=None)) == "dead"
    timeout = Failed(id=1, token=1, error=error, retry_at=now)
    assert task_outcome(timeout, TaskTimeout("attempt timed out after 1s")) == "timeout"
    assert task_outcome(Released(id=1, token=1, run_at=now)) == "released"
    assert task_outcome(Cancelled(id=1, token=1)) == "cancelled"
