"""What an operator sees of a breaker and does to it: its last failures, since when and
why, isolation held across builds and reloads, names looked up."""

from __future__ import annotations

import pytest

from gladd.policies.model import Policies
from gladd.resilience import BreakerState, FakeClock, Resilience
from gladd.resilience.breaker import RECENT_FAILURES, Breaker
from gladd.resilience.guards import UnknownBreaker, task_breaker_id

from ._policies import breaker_policy

POLICIES = {
    "breaker": {"api": {"failures": 3, "open_for": "1m"}},
    "services": {"billing": {"breaker": "api"}, "crm": {"breaker": "api"}},
    "tasks": {"invoice": {"service": "billing"}, "own": {"breaker": "api"}},
}


def fail(breaker: Breaker, reason: str) -> None:
    permit = breaker.acquire()
    assert permit is not None
    breaker.record_failure(permit, reason)


def test_a_breaker_keeps_its_last_failures_and_says_since_when_and_why() -> None:
    clock = FakeClock()
    breaker = Breaker(breaker_policy(failures=RECENT_FAILURES + 2), clock=clock)
    for n in range(RECENT_FAILURES + 1):
        clock.advance(1)
        fail(breaker, f"HTTPStatusError: 503 #{n}")
    stats = breaker.stats()
    assert [f.reason[-2:] for f in stats.recent_failures] == [f"#{n}" for n in range(1, 6)]
    assert [f.ago for f in stats.recent_failures] == [4, 3, 2, 1, 0]
    clock.advance(1)
    fail(breaker, "HTTPStatusError: 503 #6")
    clock.advance(10)
    stats = breaker.stats()
    assert stats.state is BreakerState.OPEN
    assert stats.since_ago == 10
    assert stats.reason == "7 consecutive failures, last: HTTPStatusError: 503 #6"
    breaker.reset("reset by operator x")
    stats = breaker.stats()
    assert stats.recent_failures == ()
    assert (stats.state, stats.since_ago, stats.reason) == (
        BreakerState.CLOSED,
        0,
        "reset by operator x",
    )


def test_an_isolation_holds_for_a_breaker_built_later_and_across_a_reload() -> None:
    r = Resilience(Policies.model_validate(POLICIES), clock=FakeClock())
    r.isolate_breaker("api:invoice")  # not built yet, nor named by any service
    r.isolate_breaker("api:billing")
    assert r.service("billing").breaker.state is BreakerState.ISOLATED
    assert r.service("crm").breaker.state is BreakerState.CLOSED
    r.apply(Policies.model_validate(POLICIES))
    assert r.service("billing").breaker.state is BreakerState.ISOLATED
    r.reset_breaker("api:billing")
    assert r.service("billing").breaker.state is BreakerState.CLOSED
    assert r.isolated() == {"api:invoice"}


def test_sync_isolates_what_the_store_holds_and_resets_what_it_no_longer_does() -> None:
    r = Resilience(Policies.model_validate(POLICIES), clock=FakeClock())
    r.sync_isolated({"api:billing": "10.0.0.1 (with token)"})
    billing = r.service("billing").breaker
    assert billing.state is BreakerState.ISOLATED
    assert billing.stats().reason == "isolated by operator 10.0.0.1 (with token)"
    r.sync_isolated({"api:crm": "x"})
    assert billing.state is BreakerState.CLOSED
    assert r.service("crm").breaker.state is BreakerState.ISOLATED


def test_names_are_policy_colon_target_or_a_target_one_breaker_guards() -> None:
    r = Resilience(Policies.model_validate(POLICIES), clock=FakeClock())
    # The declared services' and task kinds' breakers, before any call.
    assert list(r.known_breakers()) == ["api:billing", "api:crm", "api:own"]
    assert r.find_breaker("own")[0] == "api:own"
    assert r.find_breaker("crm")[0] == "api:crm"
    assert r.find_breaker("api:billing")[1] is r.service("billing").breaker
    listed = "api:billing, api:crm, api:own"
    with pytest.raises(UnknownBreaker, match=rf"no breaker 'api'; the breakers are: {listed}$"):
        r.find_breaker("api")


def test_the_breaker_a_task_kind_waits_on() -> None:
    p = Policies.model_validate(POLICIES)
    assert task_breaker_id(p, "invoice") == "api:billing"
    assert task_breaker_id(p, "own") == "api:own"
    assert task_breaker_id(p, "other") is None
