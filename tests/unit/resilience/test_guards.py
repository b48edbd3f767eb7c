"""The guard registry built from Policies, and live reconfiguration keeping compatible state."""

from __future__ import annotations

import pytest

from gladd.policies.model import Policies
from gladd.resilience import BreakerState, Counters, FakeClock, Resilience

BASE = {
    "retry": {"http": {"attempts": 4, "deadline": "30s", "budget": {"ratio": 0.5}}},
    "breaker": {"api": {"failures": 3, "open_for": "1m"}},
    "services": {
        "billing": {"retry": "http", "breaker": "api", "timeout": "2s"},
        "crm": {"retry": "http", "breaker": "api", "timeout": "5s"},
    },
    "tasks": {"email.send": {"retry": "http", "timeout": "20s"}},
    "database": {"query_timeout": "3s"},
}


def policies(**changes) -> Policies:
    data = {**BASE, **changes}
    return Policies.model_validate(data)


def trip(breaker, n):
    for _ in range(n):
        breaker.record_failure(breaker.acquire())


def test_guards_from_bindings():
    r = Resilience(policies(), clock=FakeClock(), seed=1)
    billing = r.service("billing")
    assert (billing.name, billing.target, billing.timeout) == ("http", "billing", 2.0)
    assert billing.retry.attempts == 4
    assert r.service("billing") is billing
    assert r.task("email.send").timeout == 20.0
    assert r.task("unknown.kind").timeout == 900.0  # executor.task_timeout
    assert r.database().timeout == 3.0
    assert r.database().retry is None


def test_budget_shared_per_policy_breaker_per_target():
    r = Resilience(policies(), clock=FakeClock())
    billing, crm = r.service("billing"), r.service("crm")
    assert billing.budget is crm.budget is r.task("email.send").budget
    assert billing.breaker is not crm.breaker
    trip(billing.breaker, 3)
    assert billing.breaker.state is BreakerState.OPEN
    assert crm.breaker.state is BreakerState.CLOSED
    assert set(r.breakers()) == {("api", "billing"), ("api", "crm")}


def test_apply_compatible_change_keeps_state_and_updates_guards():
    counters = Counters()
    r = Resilience(policies(), clock=FakeClock(), sinks=[counters])
    billing = r.service("billing")
    trip(billing.breaker, 3)
    budget = billing.budget
    new = policies(
        breaker={"api": {"failures": 10, "open_for": "2m", "max_open_for": "10m"}},
        services={"billing": {"retry": "http", "breaker": "api", "timeout": "1s"}},
    )
    results = r.apply(new)
    assert all(res.kept_state for res in results)
    assert billing.breaker.state is BreakerState.OPEN
    assert billing.breaker.retry_in() == 120.0
    assert billing.timeout == 1.0  # the guard handed out earlier sees the new rules
    assert billing.budget is budget
    assert counters.figures("api").breaker_opened == 1


def test_apply_mode_change_resets_and_reports():
    r = Resilience(policies(), clock=FakeClock())
    billing = r.service("billing")
    trip(billing.breaker, 3)
    results = r.apply(policies(breaker={"api": {"mode": "ratio"}}))
    assert [res.kept_state for res in results] == [False]  # only billing was built
    assert "mode changed" in results[0].reason
    assert billing.breaker.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_transport_honours_binding_flags():
    p = policies(services={"billing": {"retry": "http", "retry_non_idempotent": True}})
    r = Resilience(p, clock=FakeClock())
    transport = r.transport("billing")
    assert transport.retry_non_idempotent
    assert transport.guard is r.service("billing")
    await transport.aclose()
