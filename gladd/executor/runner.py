"""The executor: claims tasks, runs their handlers under the policies, records outcomes.

Three loops share one task group: claiming (bounded by ``executor.concurrency``, woken by
the store, polling only as a fallback), heartbeats (which also deliver cancellations), and
maintenance (rescue of dead workers' tasks, retention purge). Outcomes are written by a
flusher in batches: under load many completions share one round trip; when idle, the
first completion is written at once.

Stopping: claiming stops, running handlers get ``executor.shutdown_grace`` to finish, then
are cancelled and *released* (pending again, attempt refunded) — nothing is lost, and
heartbeats go on until the last outcome is written. :meth:`Executor.stop_now` skips the
grace: running handlers are cancelled and released at once. Whatever could not be written
is :attr:`Executor.unreleased`, for the daemon to report.

A failed outcome write is retried after the store backoff (:mod:`gladd.resilience.pacing`:
``database.retry``'s schedule, jittered, at most a heartbeat), never at a fixed rhythm a
fleet would share.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum

import anyio
from anyio.abc import TaskGroup, TaskStatus
from loguru import logger
from pydantic import BaseModel

from gladd.errors import StoreError, TaskTimeout
from gladd.executor.decide import after_failure, new_task, task_retry_plan, timeout_for
from gladd.executor.kinds import (
    ContextFactory,
    Kind,
    KindRegistry,
    Snooze,
    TaskContext,
    basic_context,
)
from gladd.executor.outcomes import task_outcome
from gladd.instruments.activity import activities
from gladd.policies import Policies
from gladd.resilience.backoff import Backoff
from gladd.resilience.breaker import Breaker
from gladd.resilience.classify import DEFAULT_CLASSIFIER
from gladd.resilience.pacing import Pacer, capped, store_backoff
from gladd.resilience.retry import RetryPlan
from gladd.store import Cancelled, Failed, Outcome, Released, Store, Succeeded, Task

CLAIM_BATCH = 100
PURGE_EVERY = 3600.0


def utcnow() -> datetime:
    return datetime.now(UTC)


class StopReason(Enum):
    CANCEL = "cancel"  # an operator cancelled the task
    SHUTDOWN = "shutdown"  # the node is stopping: release without spending the attempt


@dataclass(slots=True)
class _Running:
    task: Task
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    reason: StopReason | None = None


@dataclass(slots=True)
class ExecutorStats:
    """Counters for health and metrics."""

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    timeouts: int = 0
    released: int = 0
    cancelled: int = 0
    fenced: int = 0
    rescued: int = 0
    postponed: int = 0


class Executor:
    """One node's worker. ``await tg.start(executor.run)``; ``executor.stop()`` to drain."""

    def __init__(
        self,
        *,
        store: Store,
        kinds: KindRegistry,
        policies: Callable[[], Policies],
        worker_id: str,
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        rescue_all_at_start: bool = False,
        breaker_for: Callable[[str], Breaker | None] | None = None,
        context_for: ContextFactory = basic_context,
        store_health: Callable[[StoreError | None], None] | None = None,
        observe_task: Callable[[str, str, float], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.store = store
        self.kinds = kinds
        self.policies = policies
        self.worker_id = worker_id
        self.now = now
        self.rng = rng or random.Random()
        self.breaker_for = breaker_for
        self.context_for = context_for
        self.observe_task = observe_task
        self._store_health = store_health or (lambda error: None)
        self._sleep = sleep
        self._flush_pacer = Pacer(self._flush_backoff, self.rng)
        self.stats = ExecutorStats()
        self._rescue_all_at_start = rescue_all_at_start
        self._running: dict[int, _Running] = {}
        self._unwritten: dict[int, int] = {}  # id → token of outcomes not yet stored
        self._outbox: list[Outcome] = []
        self._outbox_ready = anyio.Event()
        self._slot_freed = anyio.Event()
        self._stopping = anyio.Event()
        self._idle = anyio.CancelScope()
        self._grace = anyio.CancelScope()
        self._no_grace = False
        self._plans_for: Policies | None = None
        self._plans: dict[str, RetryPlan | None] = {}  # per kind, for `_plans_for`

    @property
    def running(self) -> int:
        return len(self._running)

    def wake(self) -> None:
        """Re-read the policies now (a reload may have raised the concurrency)."""
        self._slot_freed.set()
        self._idle.cancel()

    def stop(self) -> None:
        """Stop claiming; running tasks finish within the grace, then are released."""
        self._stopping.set()
        self._idle.cancel()

    def stop_now(self) -> None:
        """Stop claiming and release the running tasks at once, without the grace."""
        self._no_grace = True
        self.stop()
        self._grace.cancel()
        for task_id in list(self._running):
            self._cancel(task_id, StopReason.SHUTDOWN)

    @property
    def unreleased(self) -> list[int]:
        """Tasks this worker claimed whose outcome (or release) is not stored (yet)."""
        return sorted(self._unwritten)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._start_rescue()
        await self._heartbeat()
        async with anyio.create_task_group() as background:
            background.start_soon(self._heartbeat_loop)
            background.start_soon(self._maintenance_loop)
            background.start_soon(self._flush_loop)
            task_status.started()
            async with anyio.create_task_group() as handlers:
                await self._claim_loop(handlers)
                await self._drain()
            await self._flush_everything()
            background.cancel_scope.cancel()
        await self._leave()

    # -- claiming ---------------------------------------------------------------------

    async def _claim_loop(self, handlers: TaskGroup) -> None:
        while not self._stopping.is_set():
            policies = self.policies()
            free = policies.executor.concurrency - len(self._running)
            if free <= 0:
                await self._wait_for_slot()
                continue
            tasks = await self._claim(min(free, CLAIM_BATCH))
            if tasks is None:
                await self._idle_wait(policies.executor.poll_interval, store_wake=False)
                continue
            for task in tasks:
                running = _Running(task=task)
                self._running[task.id] = running
                self._unwritten[task.id] = task.token
                handlers.start_soon(self._run_one, running)
            if not tasks:
                await self._idle_wait(policies.executor.poll_interval, store_wake=True)

    async def _claim(self, limit: int) -> list[Task] | None:
        try:
            tasks = await self.store.claim(
                worker=self.worker_id, limit=limit, now=self.now(), kinds=self.kinds.names()
            )
        except StoreError as exc:
            self._store_health(exc)
            logger.debug("claiming tasks failed, will retry: {}", exc)
            return None
        self._store_health(None)
        self.stats.claimed += len(tasks)
        return tasks

    async def _idle_wait(self, seconds: float, *, store_wake: bool) -> None:
        with anyio.CancelScope() as self._idle:
            if self._stopping.is_set():
                return
            if store_wake:
                try:
                    await self.store.wait_for_work(seconds)
                except StoreError as exc:
                    logger.warning("waiting for tasks failed: {}", exc)
                    await anyio.sleep(seconds)
            else:
                await anyio.sleep(seconds)

    async def _wait_for_slot(self) -> None:
        with anyio.CancelScope() as self._idle:
            if not self._stopping.is_set():
                await self._slot_freed.wait()
        self._slot_freed = anyio.Event()

    # -- running one task -------------------------------------------------------------

    async def _run_one(self, running: _Running) -> None:
        task = running.task
        policies = self.policies()
        breaker = self.breaker_for(task.kind) if self.breaker_for else None
        permit = breaker.acquire() if breaker is not None else None
        if breaker is not None and permit is None:
            outcome: Outcome = self._postponed(task, breaker, policies)
        else:
            started = anyio.current_time()
            with running.scope:
                outcome, error = await self._attempt(task, policies)
            if running.scope.cancelled_caught:
                outcome, error = self._stopped_outcome(running), None
            took = anyio.current_time() - started
            if breaker is not None and permit is not None:
                _tell_breaker(breaker, permit, outcome, error, took)
            if self.observe_task is not None:
                self.observe_task(task.kind, task_outcome(outcome, error), took)
        self._running.pop(task.id, None)
        self._slot_freed.set()
        self._record(outcome)

    def _postponed(self, task: Task, breaker: Breaker, policies: Policies) -> Released:
        wait = breaker.retry_in() or policies.executor.poll_interval
        logger.info(
            "task {} ({}) postponed {:.3g}s: breaker {} for {} is {}",
            task.id,
            task.kind,
            wait,
            breaker.name,
            breaker.target,
            breaker.state.value,
        )
        self.stats.postponed += 1
        return Released(id=task.id, token=task.token, run_at=self.now() + timedelta(seconds=wait))

    async def _attempt(
        self, task: Task, policies: Policies
    ) -> tuple[Outcome, BaseException | None]:
        kind = self.kinds.require(task.kind)
        limit = timeout_for(policies, task)
        log = logger.bind(task_id=task.id, kind=task.kind, attempt=task.attempt)
        try:
            payload = kind.parse(task.payload)
            with anyio.move_on_after(limit) as deadline:
                async with self.context_for(task, log, self._enqueue_follow_up) as ctx:
                    result = await self._call(kind, ctx, payload)
            if deadline.cancelled_caught:
                self.stats.timeouts += 1
                log.warning("task {} ({}) timed out after {:g}s", task.id, task.kind, limit)
                error = TaskTimeout(f"attempt timed out after {limit:g}s")
                return self._failed(task, error, policies), error
            return Succeeded(id=task.id, token=task.token, result=_jsonable(result)), None
        except Snooze as snooze:
            run_at = self.now() + timedelta(seconds=snooze.seconds)
            return Released(id=task.id, token=task.token, run_at=run_at), None
        except Exception as exc:  # any handler error is recorded, never raised
            return self._failed(task, exc, policies), exc

    async def _call(self, kind: Kind, ctx: TaskContext, payload: object) -> object:
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

    def _stopped_outcome(self, running: _Running) -> Outcome:
        task = running.task
        if running.reason is StopReason.CANCEL:
            return Cancelled(id=task.id, token=task.token)
        return Released(id=task.id, token=task.token, run_at=self.now())

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
        enqueued = await self.store.enqueue(spec, now=now)
        return enqueued.task.id

    # -- writing outcomes -------------------------------------------------------------

    def _record(self, outcome: Outcome) -> None:
        self._outbox.append(outcome)
        self._outbox_ready.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = anyio.Event()
            await self._flush()

    async def _flush(self) -> None:
        batch, self._outbox = self._outbox, []
        if not batch:
            return
        try:
            accepted = await self.store.finish(batch, now=self.now())
        except StoreError as exc:
            # Keep them: the next flush retries, and heartbeats keep the tasks ours meanwhile.
            self._store_health(exc)
            logger.debug("writing {} task outcomes failed, will retry: {}", len(batch), exc)
            self._outbox = batch + self._outbox
            await self._sleep(self._flush_pacer.next_delay())
            self._outbox_ready.set()
            return
        self._flush_pacer.succeeded()
        for outcome, ok in zip(batch, accepted, strict=True):
            self._unwritten.pop(outcome.id, None)
            self._count(outcome, ok)

    def _flush_backoff(self) -> Backoff:
        # Never longer than a heartbeat: heartbeats keep the tasks ours while we wait, and
        # once the store answers again the outcomes should not sit here much longer.
        policies = self.policies()
        return capped(store_backoff(policies), policies.executor.heartbeat)

    def _count(self, outcome: Outcome, ok: bool) -> None:
        if not ok:
            self.stats.fenced += 1
            logger.warning(
                "task {}: outcome discarded, another worker owns it now (fencing token {})",
                outcome.id,
                outcome.token,
            )
        elif isinstance(outcome, Succeeded):
            self.stats.succeeded += 1
        elif isinstance(outcome, Failed):
            self.stats.failed += 1
            self.stats.dead += outcome.retry_at is None
        elif isinstance(outcome, Released):
            self.stats.released += 1
        else:
            self.stats.cancelled += 1

    async def _flush_everything(self) -> None:
        with anyio.move_on_after(self.policies().executor.heartbeat):
            while self._outbox:
                await self._flush()

    # -- heartbeats, rescue, retention ------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.policies().executor.heartbeat)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        mine = list(self._unwritten.items())
        try:
            cancel = await self.store.heartbeat(worker=self.worker_id, now=self.now(), running=mine)
        except StoreError as exc:
            self._store_health(exc)
            logger.debug("heartbeat failed: {}", exc)
            return
        for task_id in cancel:
            self._cancel(task_id, StopReason.CANCEL)

    def _cancel(self, task_id: int, reason: StopReason) -> None:
        running = self._running.get(task_id)
        if running is not None and running.reason is None:
            running.reason = reason
            running.scope.cancel()
            if reason is StopReason.CANCEL:
                logger.info("task {} ({}) cancelled by request", task_id, running.task.kind)

    async def _maintenance_loop(self) -> None:
        last_purge = -PURGE_EVERY
        while True:
            e = self.policies().executor
            await anyio.sleep(max(1.0, e.lease / 2))
            await self._rescue(e.lease)
            if anyio.current_time() - last_purge >= PURGE_EVERY:
                last_purge = anyio.current_time()
                await self._purge(e.retention)

    async def _start_rescue(self) -> None:
        # On SQLite only this process uses the file: whatever is still running was left by
        # a previous process, whatever its last heartbeat says.
        lease = 0.0 if self._rescue_all_at_start else self.policies().executor.lease
        await self._rescue(lease)

    async def _rescue(self, lease: float) -> None:
        e = self.policies().executor
        try:
            report = await self.store.rescue(now=self.now(), lease=lease, max_rescues=e.max_rescues)
        except StoreError as exc:
            logger.warning("rescuing tasks of dead workers failed: {}", exc)
            return
        if report.to_pending or report.to_dead:
            self.stats.rescued += len(report.to_pending) + len(report.to_dead)
            logger.warning(
                "rescued {} task(s) back to pending and {} to dead (rescue cap {}) from "
                "worker(s) presumed dead: {}",
                len(report.to_pending),
                len(report.to_dead),
                e.max_rescues,
                ", ".join(report.dead_workers) or "past their deadline",
            )

    async def _purge(self, retention: float) -> None:
        try:
            purged = await self.store.purge(
                finished_before=self.now() - timedelta(seconds=retention)
            )
        except StoreError as exc:
            logger.warning("purging finished tasks failed: {}", exc)
            return
        if purged:
            logger.info("purged {} finished task(s) older than the retention", purged)

    # -- stopping ---------------------------------------------------------------------

    async def _drain(self) -> None:
        grace = 0.0 if self._no_grace else self.policies().executor.shutdown_grace
        if self._running and grace:
            logger.info("waiting up to {:g}s for {} running task(s)", grace, len(self._running))
        with anyio.move_on_after(grace) as self._grace:
            while self._running:
                await self._slot_freed.wait()
                self._slot_freed = anyio.Event()
        for task_id in list(self._running):
            self._cancel(task_id, StopReason.SHUTDOWN)
        if self._running:
            logger.warning("grace over: releasing {} task(s) to pending", len(self._running))

    async def _leave(self) -> None:
        if self._unwritten:
            logger.error(
                "{} task outcome(s) could not be written; those tasks will be rescued",
                len(self._unwritten),
            )
            return
        try:
            await self.store.forget_worker(self.worker_id)
        except StoreError as exc:
            logger.warning("could not deregister worker {}: {}", self.worker_id, exc)


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
