"""One attempt at one task: its handler run under its timeout, breaker and context.

The decisions are pure and live in :mod:`gladd.executor.decide` (retry when, or dead);
here is only what runs them: the breaker's permit (an open breaker postpones the task
without spending the attempt), the timeout, the handler (async in the loop, plain functions
in a worker thread), and the outcome handed to the completer.

A handler's call refused by the service's flow control is postponed the same way, no
attempt spent: :class:`~gladd.errors.ServiceCooldown` until the cooldown ends,
:class:`~gladd.errors.BulkheadFull` (or ``RateLimited``) after the service's ``max_wait``
(at least :data:`OVERLOAD_DELAY`) — local overload, not the task's failure.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import anyio
from loguru import logger
from pydantic import BaseModel

from gladd import tracing
from gladd.errors import BulkheadFull, ServiceCooldown, TaskTimeout
from gladd.executor.decide import after_failure, new_task, task_retry_plan, timeout_for
from gladd.executor.enqueue import store_new_task
from gladd.executor.kinds import ContextFactory, KindRegistry, RegisteredKind, Snooze, TaskContext
from gladd.executor.ledger import Ledger, Running, StopReason
from gladd.executor.outcomes import task_outcome
from gladd.executor.progress import ProgressWriter
from gladd.instruments.activity import activities
from gladd.policies import Policies
from gladd.resilience.breaker import Breaker, Held
from gladd.resilience.classify import DEFAULT_CLASSIFIER
from gladd.resilience.clock import Clock
from gladd.resilience.guards import breaker_id
from gladd.resilience.retry import RetryPlan
from gladd.resilience.state import BreakerState
from gladd.store import Cancelled, Failed, Outcome, Released, Store, Succeeded, Task
from gladd.store.timeline import SNOOZE

OVERLOAD_DELAY = 0.5
"""The shortest postponement of a task whose call found its service's bulkhead full."""

ISOLATED_DELAY = 2.0
"""Seconds a task whose breaker an operator isolated is postponed by (a reset lets it run
at most this much later)."""


@dataclass(slots=True, kw_only=True, eq=False)
class Attempts:
    """Runs the attempts the producer starts: ``await attempts.run_one(running)``."""

    store: Store
    kinds: KindRegistry
    policies: Callable[[], Policies]
    ledger: Ledger
    record: Callable[[Outcome], None]
    now: Callable[[], datetime]
    clock: Clock
    rng: random.Random
    breaker_for: Callable[[str], Breaker | None] | None
    context_for: ContextFactory
    observe_task: Callable[[str, str, float], None] | None
    worker_id: str = ""
    progress: ProgressWriter | None = None
    timeouts: int = field(default=0, init=False)
    postponed: int = field(default=0, init=False)
    postponed_by: Counter[str] = field(default_factory=Counter, init=False)
    """``postponed`` by reason: breaker, cooldown, bulkhead (a full bulkhead or no rate
    token)."""
    _plans_for: Policies | None = field(default=None, init=False)
    _plans: dict[str, RetryPlan | None] = field(default_factory=dict, init=False)
    """Per kind, for ``_plans_for``."""

    async def run_one(self, running: Running) -> None:
        """Attempt the task, free its slot, and hand its outcome to be written."""
        task = running.task
        policies = self.policies()
        breaker = self.breaker_for(task.kind) if self.breaker_for else None
        permit = breaker.acquire() if breaker is not None else None
        if breaker is not None and permit is None:
            outcome: Outcome = self._postponed(task, breaker, policies)
        elif (traces := tracing.current()) is None:
            outcome, _, _ = await self._run(running, policies, breaker, permit)
        else:
            with traces.consuming(
                kind=task.kind,
                task_id=task.id,
                attempt=task.attempt,
                max_attempts=task.max_attempts,
                traceparent=task.traceparent,
                node=self.worker_id,
            ) as span:
                outcome, error, label = await self._run(running, policies, breaker, permit)
                traces.attempt_ended(span, label, error)
        self.ledger.ran(task.id)
        self.record(outcome)

    async def _run(
        self, running: Running, policies: Policies, breaker: Breaker | None, permit: int | None
    ) -> tuple[Outcome, BaseException | None, str]:
        """The attempt under its breaker permit: its outcome, error and outcome label."""
        task = running.task
        started = self.clock.monotonic()
        with running.scope, _holding(breaker, permit) as held:
            outcome, error = await self._attempt(task, policies)
        if running.scope.cancelled_caught:
            outcome, error = self._stopped_outcome(running), None
        took = self.clock.monotonic() - started
        outcome = replace(outcome, duration=took, node=self.worker_id or None)  # timeline
        if breaker is not None and permit is not None:
            if held is not None and held.used:
                breaker.release(permit)  # its calls through the breaker gave the verdicts
            else:
                _tell_breaker(breaker, permit, outcome, error, took)
        label = task_outcome(outcome, error)
        if self.observe_task is not None:
            self.observe_task(task.kind, label, took)
        return outcome, error, label

    def _postponed(self, task: Task, breaker: Breaker, policies: Policies) -> Released:
        state = breaker.state
        if state is BreakerState.ISOLATED:
            # Held open until an operator resets it, which may be soon: look again after
            # ISOLATED_DELAY (not every poll, which would churn the store).
            wait = max(ISOLATED_DELAY, policies.executor.poll_interval)
            why = "isolated by operator"
        else:
            wait = breaker.retry_in() or policies.executor.poll_interval
            why = state.value
        logger.info(
            "task {} ({}) postponed {:.3g}s: breaker {} for {} is {}",
            task.id,
            task.kind,
            wait,
            breaker.name,
            breaker.target,
            why,
        )
        self._count_postponed("breaker")
        return Released(
            id=task.id,
            token=task.token,
            run_at=self.now() + timedelta(seconds=wait),
            reason="breaker",
            why=f"breaker {breaker_id(breaker.name, breaker.target)} is {why}",
            node=self.worker_id or None,
        )

    def _held_back(self, task: Task, error: ServiceCooldown | BulkheadFull) -> Released:
        """A call of the handler was refused by its service's flow control: run the task
        again once that may pass, with the attempt refunded."""
        now = self.now()
        if isinstance(error, ServiceCooldown):
            run_at, reason, why = error.until, "cooldown", "is cooling down"
        else:
            run_at = now + timedelta(seconds=max(error.max_wait, OVERLOAD_DELAY))
            reason, why = "bulkhead", f"has no free {error.setting} capacity"
        logger.info(
            "task {} ({}) postponed until {:%H:%M:%S}: service {} {}",
            task.id,
            task.kind,
            run_at,
            error.service,
            why,
        )
        self._count_postponed(reason)
        return Released(
            id=task.id,
            token=task.token,
            run_at=max(run_at, now),
            reason=reason,
            why=f"service {error.service} {why}",
        )

    def _count_postponed(self, reason: str) -> None:
        self.postponed += 1
        self.postponed_by[reason] += 1

    async def _attempt(
        self, task: Task, policies: Policies
    ) -> tuple[Outcome, BaseException | None]:
        kind = self.kinds.require(task.kind)
        limit = timeout_for(policies, task)
        log = logger.bind(task_id=task.id, kind=task.kind, attempt=task.attempt)
        try:
            # Again here, as at enqueue: a client checked the payload against the published
            # JSON Schema only, which cannot say all a model's validators or the plugin's
            # check do (issue 15). A refusal is a TaskRejected: dead at once, no retry.
            payload = kind.parse(task.payload)
            kind.check(payload, policies)
            with anyio.move_on_after(limit) as deadline:
                async with self.context_for(task, log, self._enqueue_follow_up) as made:
                    ctx = made
                    if self.progress is not None:
                        ctx = replace(made, progress_to=self.progress.reporter(task))
                    result = await self._call(kind, ctx, payload)
            if deadline.cancelled_caught:
                self.timeouts += 1
                log.warning("task {} ({}) timed out after {:g}s", task.id, task.kind, limit)
                error = TaskTimeout(f"attempt timed out after {limit:g}s")
                return self._failed(task, error, policies), error
            return Succeeded(id=task.id, token=task.token, result=_jsonable(result)), None
        except Snooze as snooze:
            run_at = self.now() + timedelta(seconds=snooze.seconds)
            return Released(id=task.id, token=task.token, run_at=run_at, reason=SNOOZE), None
        except (ServiceCooldown, BulkheadFull) as refused:
            return self._held_back(task, refused), None
        except Exception as exc:  # any handler error is recorded, never raised
            return self._failed(task, exc, policies), exc

    async def _call(self, kind: RegisteredKind, ctx: TaskContext, payload: object) -> object:
        if kind.is_async:
            # Named while it runs, so the loop-lag monitor can say who blocked the loop.
            detail = f"task {ctx.task.id}, plugin {kind.plugin}"
            return await activities.track("task", kind.name, kind.handler(ctx, payload), detail)
        return await anyio.to_thread.run_sync(kind.handler, ctx, payload, abandon_on_cancel=True)

    def _failed(self, task: Task, exc: BaseException, policies: Policies) -> Failed:
        outcome = after_failure(
            task, exc, retry=self._retry_plan(policies, task.kind), now=self.now(), rng=self.rng
        )
        verdict = f"retry at {outcome.retry_at:%H:%M:%S}" if outcome.retry_at else "dead"
        logger.bind(task_id=task.id, kind=task.kind, attempt=task.attempt).warning(
            "task {} ({}) attempt {}/{} failed: {}: {} → {}",
            task.id,
            task.kind,
            task.attempt,
            task.max_attempts,
            outcome.error.type,
            outcome.error.message,
            verdict,
        )
        return outcome

    def _retry_plan(self, policies: Policies, kind: str) -> RetryPlan | None:
        if policies is not self._plans_for:
            self._plans_for, self._plans = policies, {}
        if kind not in self._plans:
            self._plans[kind] = task_retry_plan(policies, kind)
        return self._plans[kind]

    def _stopped_outcome(self, running: Running) -> Outcome:
        task = running.task
        if running.reason is StopReason.CANCEL:
            return Cancelled(id=task.id, token=task.token)
        return Released(
            id=task.id,
            token=task.token,
            run_at=self.now(),
            reason="stop",
            why="the node is stopping: released without spending the attempt",
        )

    async def _enqueue_follow_up(
        self, kind: str, payload: object = None, *, delay: float = 0.0, **options: object
    ) -> int:
        self.kinds.require(kind)
        now = self.now()
        spec = new_task(
            self.policies(),
            kind=kind,
            payload={} if payload is None else payload,
            run_at=now + timedelta(seconds=delay),
            **options,  # type: ignore[arg-type]
        )
        # With traces on, a child of this attempt's span.
        return (await store_new_task(self.store, spec, now=now)).id


@contextmanager
def _holding(breaker: Breaker | None, permit: int | None) -> Iterator[Held | None]:
    """The task's permit, shared with the calls its handler makes through the same breaker
    (a service's): when the task is the half-open probe, so are they."""
    if breaker is None or permit is None:
        yield None
        return
    with breaker.holding(permit) as held:
        yield held


def _tell_breaker(
    breaker: Breaker, permit: int, outcome: Outcome, error: BaseException | None, took: float
) -> None:
    """Only what says the service is unhealthy counts against it (DEFAULT_CLASSIFIER)."""
    if isinstance(outcome, Succeeded):
        breaker.record_success(permit, took)
    elif error is not None and DEFAULT_CLASSIFIER.transient(error):
        breaker.record_failure(permit, f"{type(error).__name__}: {error}")
    else:
        breaker.release(permit)


def _jsonable(result: object) -> object:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"handler returned a value that is not JSON: {exc}") from None
    return result
