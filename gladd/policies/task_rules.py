"""A task kind's rules as the policies give them: the single place they are resolved.

A kind declared under ``[tasks.KIND]`` takes what it names and the ``[executor]`` defaults
for what it leaves out; an undeclared kind runs under the defaults alone. The executor
(timeouts, retry schedule, priority) and the resilience engine (the kind's guard and the
breaker that postpones it) both read a kind's rules through :func:`task_rules`, so the two
cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from gladd.policies.model import Policies


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRules:
    """What one kind's attempts run under."""

    retry: str | None
    """The retry policy's name: the kind's own, else ``[executor].retry`` (None: no retry)."""
    timeout: float
    """One attempt's limit in seconds: the kind's own, else ``[executor].task_timeout``."""
    breaker: str | None
    """The kind's own breaker policy, if it names one."""
    service: str | None
    """The service whose breaker postpones the kind when it names no breaker of its own."""
    priority: int


def task_rules(policies: Policies, kind: str) -> TaskRules:
    """The rules of task ``kind`` under ``policies`` (defaults when it is not declared)."""
    executor = policies.executor
    binding = policies.tasks.get(kind)
    if binding is None:
        return TaskRules(
            retry=executor.retry,
            timeout=executor.task_timeout,
            breaker=None,
            service=None,
            priority=0,
        )
    return TaskRules(
        retry=binding.retry or executor.retry,
        timeout=binding.timeout if binding.timeout is not None else executor.task_timeout,
        breaker=binding.breaker,
        service=binding.service,
        priority=binding.priority,
    )
