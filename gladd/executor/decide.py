"""What happens to a task after an attempt: pure decisions, no I/O.

The executor turns a handler's exception into a stored outcome here: retry at a time
computed from the kind's retry policy, or dead. Time and randomness are passed in.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from gladd.executor.kinds import FailTask, RetryLater
from gladd.policies import Policies
from gladd.policies.model import SchedulePolicy
from gladd.policies.task_rules import task_rules
from gladd.resilience.retry import RetryPlan
from gladd.store import Failed, NewTask, Task, TaskError

MAX_MESSAGE = 2000


def task_retry_plan(policies: Policies, kind: str) -> RetryPlan | None:
    """The retry policy between attempts of ``kind`` (persisted: waits happen in the store)."""
    name = task_rules(policies, kind).retry
    policy = policies.retry.get(name) if name else None
    return RetryPlan.from_policy(name, policy) if name and policy else None


def timeout_for(policies: Policies, task: Task) -> float:
    """One attempt's timeout: the task's own, else its kind's, else the executor's."""
    if task.timeout is not None:
        return task.timeout
    return task_rules(policies, task.kind).timeout


def error_record(exc: BaseException, *, attempt: int, now: datetime) -> TaskError:
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    message = str(exc) or repr(exc)
    return TaskError(type=name, message=message[:MAX_MESSAGE], attempt=attempt, at=now)


def after_failure(
    task: Task, exc: BaseException, *, retry: RetryPlan | None, now: datetime, rng: random.Random
) -> Failed:
    """The outcome of a failed attempt: pending again at ``retry_at``, or dead (None)."""
    error = error_record(exc, attempt=task.attempt, now=now)
    retry_at = _retry_at(task, exc, retry=retry, now=now, rng=rng)
    return Failed(id=task.id, token=task.token, error=error, retry_at=retry_at)


def _retry_at(
    task: Task, exc: BaseException, *, retry: RetryPlan | None, now: datetime, rng: random.Random
) -> datetime | None:
    if isinstance(exc, FailTask) or task.attempt >= task.max_attempts:
        return None
    if isinstance(exc, RetryLater):
        delay = exc.seconds
    elif retry is not None and retry.classifier.cause(exc) is not None:
        previous = retry.backoff.ceiling(task.attempt - 1) if task.attempt > 1 else 0.0
        delay = retry.backoff.delay(task.attempt, previous, rng)
    else:
        return None
    retry_at = now + timedelta(seconds=delay)
    deadline = retry.deadline if retry is not None else None
    if deadline is not None and retry_at > task.created_at + timedelta(seconds=deadline):
        return None
    return retry_at


def new_task(
    policies: Policies,
    *,
    kind: str,
    payload: object,
    run_at: datetime,
    priority: int | None = None,
    unique_key: str | None = None,
    timeout: float | None = None,
    traceparent: str | None = None,
    defaults: dict[str, tuple[int, int]] | None = None,
    source: str = "python",
) -> NewTask:
    """A task to store, with the kind's policy filling what the caller left out.
    ``defaults`` caches :func:`kind_defaults` per kind for a batch under one ``policies``."""
    if defaults is None:
        default_priority, max_attempts = kind_defaults(policies, kind)
    elif (known := defaults.get(kind)) is not None:
        default_priority, max_attempts = known
    else:
        default_priority, max_attempts = defaults[kind] = kind_defaults(policies, kind)
    return NewTask(
        kind=kind,
        payload=payload,
        priority=priority if priority is not None else default_priority,
        run_at=run_at,
        max_attempts=max_attempts,
        timeout=timeout,
        unique_key=unique_key,
        traceparent=traceparent,
        source=source,
    )


def kind_defaults(policies: Policies, kind: str) -> tuple[int, int]:
    """The priority and the attempts a task of ``kind`` gets when its enqueue names none."""
    rules = task_rules(policies, kind)
    retry = policies.retry.get(rules.retry) if rules.retry else None
    return rules.priority, retry.attempts if retry is not None else 1


def scheduled_task(
    policies: Policies, name: str, schedule: SchedulePolicy, tick: datetime, run_at: datetime
) -> NewTask:
    """The task one tick of schedule ``name`` stores: the schedule's kind, payload and
    priority, the kind's retry policy, and the tick it is for."""
    spec = new_task(
        policies,
        kind=schedule.kind,
        payload=schedule.payload,
        run_at=run_at,
        priority=schedule.priority,
    )
    return replace(spec, schedule=name, scheduled_for=tick, source="schedule")
