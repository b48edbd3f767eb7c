"""A kind's rules are resolved once: the executor and the kind's guard read the same ones."""

from __future__ import annotations

from datetime import UTC, datetime

from gladd.executor.decide import new_task, task_retry_plan, timeout_for
from gladd.policies import parse_policies
from gladd.policies.task_rules import task_rules
from gladd.resilience.guards import Resilience
from gladd.store.rules import pending_task

POLICIES = b"""
[executor]
task_timeout = "30s"
retry = "default"

[retry.default]
attempts = 3

[retry.patient]
attempts = 7

[breaker.shared]
failure_ratio = 0.5

[services.api]
breaker = "shared"

[tasks."own.rules"]
timeout = "5s"
retry = "patient"
breaker = "shared"
priority = 10

[tasks."via.service"]
service = "api"
"""


def test_declared_kind_takes_its_own_rules_and_defaults_for_the_rest() -> None:
    policies = parse_policies(POLICIES, source="test").policies
    own = task_rules(policies, "own.rules")
    assert (own.retry, own.timeout, own.breaker, own.priority) == ("patient", 5.0, "shared", 10)
    via = task_rules(policies, "via.service")
    assert (via.retry, via.timeout, via.breaker, via.service) == ("default", 30.0, None, "api")
    undeclared = task_rules(policies, "not.declared")
    assert (undeclared.retry, undeclared.timeout, undeclared.breaker) == ("default", 30.0, None)


def test_executor_and_guard_agree_on_each_kinds_rules() -> None:
    policies = parse_policies(POLICIES, source="test").policies
    resilience = Resilience(policies, seed=1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for kind in ("own.rules", "via.service", "not.declared"):
        rules = task_rules(policies, kind)
        guard = resilience.task(kind)
        plan = task_retry_plan(policies, kind)
        assert guard.retry is not None
        assert plan is not None
        assert guard.retry.name == plan.name == rules.retry
        stored = new_task(policies, kind=kind, payload=None, run_at=now)
        task = pending_task(stored, task_id=1, payload=None, run_at=now, now=now)
        assert guard.timeout == timeout_for(policies, task) == rules.timeout
        assert stored.priority == rules.priority
        assert stored.max_attempts == policies.retry[rules.retry or ""].attempts
    assert resilience.task_breaker("own.rules") is not None
    assert resilience.task_breaker("via.service") is resilience.breakers()["shared", "api"]
    assert resilience.task_breaker("not.declared") is None
