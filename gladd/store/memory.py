"""The reference :class:`~gladd.store.base.Store`: in-process, in memory, for tests.

Plugin authors test against it; the contract suite holds the SQL stores to the same
behaviour. It keeps nothing across restarts and serves one event loop.

Payloads and results go through JSON on the way in and out, as in the SQL stores: a caller
can never mutate stored state through an object it passed in or got back, and a payload the
databases would refuse (a set, ``NaN``, an object) is refused here too.

The rules every store shares live in :mod:`gladd.store.rules`.
"""

from __future__ import annotations

import builtins
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gladd.errors import ConfigError, StoreError
from gladd.store import timeline as tl
from gladd.store.base import (
    FINISHED_STATES,
    Backend,
    Cancelled,
    Enqueued,
    Failed,
    GatedClaim,
    MigrationStatus,
    NewTask,
    Outcome,
    PoolStats,
    ProgressReport,
    Released,
    RescueReport,
    ScheduleState,
    StoreCapabilities,
    Succeeded,
    Task,
    TaskFilter,
    TaskPage,
    TaskProgress,
    TaskState,
    TaskStats,
    TaskWatch,
    WorkerInfo,
    nothing_to_retune,
)
from gladd.store.catalogue import KindSpec, PublishedKind, catalogue_order, published
from gladd.store.gates import GATED_SCAN, BreakerOverride, Gate, LimitUsage, Pause
from gladd.store.listing import matches, page_of, stats_of, upper_bound
from gladd.store.memory_flow import FlowBook
from gladd.store.rules import (
    Wakeup,
    check_new_task,
    deadline_for,
    dump_json,
    pending_task,
    purge_states,
    rescue,
    unique_conflict,
    utc,
)
from gladd.store.watch import Watchers, check_progress

if TYPE_CHECKING:
    from gladd.policies.model import DatabasePolicy

_UNFINISHED = (TaskState.PENDING, TaskState.RUNNING)
_RETRYABLE = (TaskState.DEAD, TaskState.CANCELLED)


# -- the store ------------------------------------------------------------------------------


class MemoryStore:
    """Tasks in a dict. Every method runs without awaiting, so each is atomic."""

    capabilities = StoreCapabilities(single_process=False)  # nothing outlives the process

    def __init__(self) -> None:
        self.url = "memory://"
        # Stored tasks hold their payload and result as JSON text; `_public` decodes.
        self._tasks: dict[int, Task] = {}
        self._workers: dict[str, datetime] = {}
        self._schedules: dict[str, ScheduleState] = {}  # last_state left None: joined on read
        self._next_id = 1
        self._wakeup: Wakeup | None = None
        self._flow = FlowBook()
        self._breakers: dict[str, BreakerOverride] = {}
        self._kinds: dict[str, list[PublishedKind]] = {}  # by node
        self._watchers = Watchers()
        self._timelines: dict[int, list[Mapping[str, Any]]] = {}  # by task id, as stored
        self.pause_epoch = 0

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._tasks)} tasks)"

    async def open(self, *, migrate: bool = True, create: bool = True) -> None:
        if self._wakeup is None:
            self._wakeup = Wakeup()

    async def close(self) -> None:
        self._wakeup = None
        self._watchers.changed_all()  # a watcher finds the store closed when it reads

    async def migration_status(self) -> MigrationStatus:
        self._require_open()
        return MigrationStatus(current=0, latest=0, applied=())

    # -- enqueue ----------------------------------------------------------------------------

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued:
        return (await self.enqueue_many([task], now=now))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask], *, now: datetime) -> list[Enqueued]:
        wakeup = self._require_open()
        now = utc(now)
        checked = [check_new_task(task, now=now) for task in tasks]
        enqueued = [
            self._insert(t, payload, run_at, now)
            for t, (payload, run_at) in zip(tasks, checked, strict=True)
        ]
        if any(e.created for e in enqueued):
            wakeup.notify()
        return enqueued

    def _insert(self, new: NewTask, payload: str, run_at: datetime, now: datetime) -> Enqueued:
        if new.unique_key is not None:
            existing = self._unfinished_with_key(new.unique_key)
            if existing is not None:
                return Enqueued(id=existing.id, created=False)
        # Stored as the other stores keep it: payload and result as JSON text.
        task = replace(
            pending_task(new, task_id=self._next_id, payload=payload, run_at=run_at, now=now),
            result="null",
        )
        self._next_id += 1
        self._tasks[task.id] = task
        self._timelines[task.id] = [tl.entry(now, tl.CREATED, source=new.source)]
        return Enqueued(id=task.id, created=True)

    def _note(self, task_id: int, *entries: dict[str, Any]) -> None:
        """Append to a task's timeline, bounded as every store bounds it."""
        self._timelines[task_id] = tl.bounded([*self._timelines.get(task_id, ()), *entries])

    def _unfinished_with_key(self, key: str) -> Task | None:
        for task in self._tasks.values():
            if task.unique_key == key and task.state in _UNFINISHED:
                return task
        return None

    # -- schedules --------------------------------------------------------------------------

    async def schedule_states(self) -> dict[str, ScheduleState]:
        self._require_open()
        return {name: self._with_last_state(row) for name, row in self._schedules.items()}

    def _with_last_state(self, row: ScheduleState) -> ScheduleState:
        last = None if row.last_task is None else self._tasks.get(row.last_task)
        return replace(row, last_state=None if last is None else last.state)

    async def advance_schedule(
        self,
        name: str,
        *,
        spec: str,
        expected: datetime | None,
        to: datetime,
        tasks: Sequence[NewTask],
        now: datetime,
    ) -> list[Enqueued] | None:
        wakeup = self._require_open()
        now, to = utc(now), utc(to, "to")
        expected = None if expected is None else utc(expected, "expected")
        checked = [check_new_task(task, now=now) for task in tasks]  # as the SQL stores do
        row = self._schedules.get(name)
        if (row is None) != (expected is None) or (row is not None and row.last_tick != expected):
            return None
        enqueued = [
            self._insert(t, payload, run_at, now)
            for t, (payload, run_at) in zip(tasks, checked, strict=True)
        ]
        last_task, last_fired_at = (
            (None, None) if row is None else (row.last_task, row.last_fired_at)
        )
        if enqueued:
            last_task, last_fired_at = enqueued[-1].id, now
        self._schedules[name] = ScheduleState(
            name=name,
            spec=spec,
            last_tick=to,
            last_task=last_task,
            last_fired_at=last_fired_at,
            last_state=None,
        )
        if any(e.created for e in enqueued):
            wakeup.notify()
        return enqueued

    async def forget_schedules(self, keep: Collection[str]) -> int:
        self._require_open()
        gone = [name for name in self._schedules if name not in keep]
        for name in gone:
            del self._schedules[name]
        return len(gone)

    # -- running ----------------------------------------------------------------------------

    async def claim(
        self, *, worker: str, limit: int, now: datetime, kinds: Sequence[str] | None = None
    ) -> list[Task]:
        self._require_open()
        now = utc(now)
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        self._workers[worker] = max(now, self._workers.get(worker, now))
        due = [
            t
            for t in self._tasks.values()
            if t.state is TaskState.PENDING
            and t.run_at <= now
            and (kinds is None or t.kind in kinds)
        ]
        due.sort(key=lambda t: (-t.priority, t.run_at, t.id))
        return [self._start(task, worker, now) for task in due[:limit]]

    def _start(self, task: Task, worker: str, now: datetime) -> Task:
        running = replace(
            task,
            state=TaskState.RUNNING,
            owner=worker,
            attempt=task.attempt + 1,
            token=task.token + 1,
            deadline=deadline_for(task.timeout, now),
            updated_at=now,
            started_at=task.started_at or now,
        )
        self._tasks[task.id] = running
        self._note(
            task.id,
            tl.entry(now, tl.CLAIMED, node=worker, token=running.token),
            tl.entry(now, tl.ATTEMPT_STARTED, attempt=running.attempt),
        )
        return _public(running)

    # -- flow control -----------------------------------------------------------------------

    async def claim_gated(
        self,
        *,
        worker: str,
        limit: int,
        now: datetime,
        kinds: Sequence[str],
        gates: Sequence[Gate],
        scan: int = GATED_SCAN,
        ended: Collection[int] = (),
    ) -> GatedClaim:
        # Atomic, as every method here: the plan is made on what it then changes.
        self._require_open()
        now = utc(now)
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        self._workers[worker] = max(now, self._workers.get(worker, now))
        over = {i for i in ended if (t := self._tasks.get(i)) is not None and t.owner == worker}
        plan = self._flow.plan(
            [t for t in self._tasks.values() if t.id not in over],
            gates=gates,
            kinds=kinds,
            scan=scan,
            limit=limit,
            now=now,
        )
        tasks = [self._start(self._tasks[task_id], worker, now) for task_id in plan.take]
        return GatedClaim(tasks=tasks, usage=plan.usage, held=plan.held, next_at=plan.next_at)

    async def limit_usage(self, gates: Sequence[Gate], *, now: datetime) -> LimitUsage:
        self._require_open()
        return self._flow.usage(self._tasks.values(), gates, utc(now))

    async def publish_kinds(self, node: str, kinds: Sequence[KindSpec], *, now: datetime) -> None:
        self._require_open()
        rows = published(node, list(kinds), utc(now))
        if rows:
            self._kinds[node] = rows
        else:
            self._kinds.pop(node, None)

    async def kinds_catalogue(self) -> list[PublishedKind]:
        self._require_open()
        return sorted((k for rows in self._kinds.values() for k in rows), key=catalogue_order)

    async def pauses(self, *, now: datetime) -> list[Pause]:
        self._require_open()
        return self._flow.active(utc(now))

    async def pause(self, pause: Pause) -> Pause:
        self._require_open()
        stored = self._flow.pause(pause)
        self.pause_epoch += 1
        return stored

    async def resume(self, target: str, *, now: datetime) -> Pause | None:
        self._require_open()
        removed = self._flow.resume(target, utc(now))
        self.pause_epoch += 1
        return removed

    async def breaker_overrides(self) -> list[BreakerOverride]:
        self._require_open()
        return [self._breakers[name] for name in sorted(self._breakers)]

    async def isolate_breaker(self, override: BreakerOverride) -> BreakerOverride:
        self._require_open()
        stored = replace(override, created_at=utc(override.created_at, "created_at"))
        self._breakers[stored.name] = stored
        self.pause_epoch += 1
        return stored

    async def reset_breaker(self, name: str) -> BreakerOverride | None:
        self._require_open()
        removed = self._breakers.pop(name, None)
        self.pause_epoch += 1
        return removed

    async def ring(self) -> None:
        self._require_open().notify()

    async def sweep_limits(self, *, now: datetime, idle: float) -> int:
        self._require_open()
        return self._flow.sweep(utc(now), idle)

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        wakeup = self._require_open()
        now = utc(now)
        results = [
            dump_json(o.result, f"result of task {o.id}") if isinstance(o, Succeeded) else ""
            for o in outcomes
        ]
        applied = [self._apply(o, r, now) for o, r in zip(outcomes, results, strict=True)]
        self._watchers.changed(o.id for o, ok in zip(outcomes, applied, strict=True) if ok)
        if any(
            ok and isinstance(o, Released | Failed) for o, ok in zip(outcomes, applied, strict=True)
        ):
            wakeup.notify()
        return applied

    def _apply(self, outcome: Outcome, result: str, now: datetime) -> bool:
        task = self._tasks.get(outcome.id)
        if task is None:
            return False
        if task.state is not TaskState.RUNNING or task.token != outcome.token:
            if task.token != outcome.token:
                self._note(task.id, tl.fenced_entry(outcome, at=now, node=outcome.node))
            return False
        done: dict[str, Any] = {"owner": None, "deadline": None, "updated_at": now}
        match outcome:
            case Succeeded():
                done.update(state=TaskState.SUCCEEDED, result=result, finished_at=now)
            case Failed(retry_at=None):
                done.update(state=TaskState.DEAD, finished_at=now)
            case Failed(retry_at=datetime() as retry_at):
                done.update(_back_to_pending(task, utc(retry_at, "retry_at"), now))
            case Released(run_at=run_at):
                done.update(_back_to_pending(task, utc(run_at, "run_at"), now))
                if done["state"] is TaskState.PENDING:
                    done["attempt"] = task.attempt - 1
            case Cancelled():
                done.update(state=TaskState.CANCELLED, finished_at=now)
        if isinstance(outcome, Failed):
            error = replace(outcome.error, at=utc(outcome.error.at, "error.at"))
            done["errors"] = (*task.errors, error)
        self._tasks[task.id] = replace(task, **done)
        entries = tl.outcome_entries(outcome, at=now)
        entries[0]["attempt"] = task.attempt
        if done["state"] is TaskState.CANCELLED:
            entries.append(tl.cancelled_entry(now))
        self._note(task.id, *entries)
        return True

    async def record_progress(
        self, reports: Sequence[ProgressReport], *, now: datetime
    ) -> list[bool]:
        self._require_open()
        now = utc(now)
        applied = [self._progress(report, now) for report in check_progress(reports)]
        self._watchers.changed(r.id for r, ok in zip(reports, applied, strict=True) if ok)
        return applied

    def _progress(self, report: ProgressReport, now: datetime) -> bool:
        task = self._tasks.get(report.id)
        if task is None or task.state is not TaskState.RUNNING or task.token != report.token:
            return False
        progress = TaskProgress(
            fraction=report.fraction, message=report.message, at=now, attempt=report.attempt
        )
        self._tasks[task.id] = replace(task, progress=progress)
        return True

    @asynccontextmanager
    async def watch(self, task_id: int) -> AsyncIterator[TaskWatch]:
        self._require_open()
        async with self._watchers.watch(task_id) as watch:
            yield watch

    async def heartbeat(
        self, *, worker: str, now: datetime, running: Sequence[tuple[int, int]]
    ) -> set[int]:
        self._require_open()
        now = utc(now)
        self._workers[worker] = max(now, self._workers.get(worker, now))
        cancel = set()
        for task_id, token in running:
            task = self._tasks.get(task_id)
            if (
                task is not None
                and task.state is TaskState.RUNNING
                and task.token == token
                and task.owner == worker
                and task.cancel_requested
            ):
                cancel.add(task_id)
        return cancel

    async def rescue(self, *, now: datetime, lease: float, max_rescues: int) -> RescueReport:
        wakeup = self._require_open()
        now = utc(now)
        cutoff = now - timedelta(seconds=lease)
        dead = {w for w, seen in self._workers.items() if seen <= cutoff}
        to_pending: list[int] = []
        to_dead: list[int] = []
        lost: set[str] = set(dead)
        for task in list(self._tasks.values()):
            if task.state is not TaskState.RUNNING:
                continue
            live = task.owner in self._workers and task.owner not in dead
            if live and (task.deadline is None or task.deadline >= now):
                continue
            if not live and task.owner is not None:
                lost.add(task.owner)
            self._tasks[task.id] = self._rescued(task, now, live, max_rescues)
            self._watchers.changed((task.id,))
            state = self._tasks[task.id].state
            self._note(task.id, tl.rescued_entry(task, at=now, live=live, state=state))
            if state is TaskState.PENDING:
                to_pending.append(task.id)
            elif state is TaskState.DEAD:
                to_dead.append(task.id)
        for worker in dead:
            del self._workers[worker]
        if to_pending:
            wakeup.notify()
        return RescueReport(
            to_pending=tuple(sorted(to_pending)),
            to_dead=tuple(sorted(to_dead)),
            dead_workers=tuple(sorted(lost)),
        )

    @staticmethod
    def _rescued(task: Task, now: datetime, live: bool, max_rescues: int) -> Task:
        state, error = rescue(task, now=now, live=live, max_rescues=max_rescues)
        return replace(
            task,
            state=state,
            run_at=now if state is TaskState.PENDING else task.run_at,
            owner=None,
            deadline=None,
            token=task.token + 1,
            rescues=task.rescues + 1,
            errors=(*task.errors, error),
            updated_at=now,
            finished_at=None if state is TaskState.PENDING else now,
        )

    async def forget_worker(self, worker: str) -> None:
        self._require_open()
        self._workers.pop(worker, None)

    # -- operators --------------------------------------------------------------------------

    async def get(self, task_id: int) -> Task | None:
        self._require_open()
        task = self._tasks.get(task_id)
        if task is None:
            return None
        return replace(_public(task), timeline=tl.read_entries(self._timelines.get(task_id, ())))

    async def list(
        self,
        *,
        state: TaskState | None = None,
        kind: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Task]:
        self._require_open()
        found: list[Task] = []
        for task_id in sorted(self._tasks, reverse=True):
            if len(found) >= limit:
                break
            task = self._tasks[task_id]
            if (
                (state is None or task.state is state)
                and (kind is None or task.kind == kind)
                and (before_id is None or task_id < before_id)
            ):
                found.append(_public(task))
        return found

    async def cancel(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        self._require_open()
        now = utc(now)
        task = self._tasks.get(task_id)
        if task is None:
            return None
        if task.state is TaskState.PENDING:
            task = replace(task, state=TaskState.CANCELLED, finished_at=now, updated_at=now)
            self._note(task_id, tl.cancelled_entry(now, by))
        elif task.state is TaskState.RUNNING and not task.cancel_requested:
            task = replace(task, cancel_requested=True, updated_at=now)
            self._note(task_id, tl.entry(now, tl.CANCEL_REQUESTED, by=by))
        self._tasks[task_id] = task
        self._watchers.changed((task_id,))
        return _public(task)

    async def retry(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        wakeup = self._require_open()
        now = utc(now)
        task = self._tasks.get(task_id)
        if task is None:
            return None
        if task.state in _RETRYABLE:
            if task.unique_key is not None:
                other = self._unfinished_with_key(task.unique_key)
                if other is not None:
                    raise unique_conflict(task_id, task.unique_key, other.id)
            task = replace(task, **retried(now))
            self._tasks[task_id] = task
            self._note(task_id, tl.entry(now, tl.RETRIED, by=by))
            self._watchers.changed((task_id,))
            wakeup.notify()
        return _public(task)

    async def purge(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        old = self._purgeable(finished_before, states)
        for task_id in old:
            del self._tasks[task_id]
            self._timelines.pop(task_id, None)
        return len(old)

    async def count_purgeable(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        return len(self._purgeable(finished_before, states))

    def _purgeable(
        self, finished_before: datetime, states: Collection[TaskState]
    ) -> tuple[int, ...]:
        self._require_open()
        finished_before = utc(finished_before, "finished_before")
        names = purge_states(states)
        return tuple(
            t.id
            for t in self._tasks.values()
            if t.finished_at is not None and t.finished_at < finished_before and t.state in names
        )

    async def counts(self) -> dict[TaskState, int]:
        return (await self.stats()).totals

    async def stats(self) -> TaskStats:
        self._require_open()  # computed: a test's store holds few tasks
        return stats_of((t.kind, t.state, 1) for t in self._tasks.values())

    async def find(self, where: TaskFilter, *, limit: int, before: int | None = None) -> TaskPage:
        self._require_open()
        below = upper_bound(where, before)
        found: list[Task] = []
        for task_id in sorted(self._tasks, reverse=True):
            if len(found) > limit:
                break
            task = self._tasks[task_id]
            if task_id < below and matches(where, task):
                found.append(_public(task))
        return page_of(found, limit)

    async def count_matching(self, where: TaskFilter) -> int:
        self._require_open()
        return sum(1 for t in self._tasks.values() if matches(where, t))

    async def workers(self) -> builtins.list[WorkerInfo]:
        self._require_open()
        running = Counter(t.owner for t in self._tasks.values() if t.state is TaskState.RUNNING)
        return [
            WorkerInfo(id=w, last_seen=seen, running=running[w])
            for w, seen in sorted(self._workers.items())
        ]

    async def wait_for_work(self, timeout: float) -> bool:
        return await self._require_open().wait(timeout)

    def prepare_retune(self, database: DatabasePolicy) -> Callable[[], None]:
        return nothing_to_retune  # no [database] field applies to it

    def pool_stats(self) -> PoolStats:
        # No connection at all, and no pretending otherwise.
        return PoolStats(
            backend="memory",
            pooled=False,
            open=self._wakeup is not None,
            size=0,
            idle=0,
            in_use=0,
            max_size=0,
        )

    def _require_open(self) -> Wakeup:
        if self._wakeup is None:
            raise StoreError(f"{self.url}: the store is not open (call `await store.open()`)")
        return self._wakeup


def _back_to_pending(task: Task, run_at: datetime, now: datetime) -> dict[str, Any]:
    if task.cancel_requested:
        return {"state": TaskState.CANCELLED, "finished_at": now}
    return {"state": TaskState.PENDING, "run_at": run_at}


def retried(now: datetime) -> dict[str, Any]:
    """The fields ``retry`` resets: pending now, with a fresh allowance of attempts."""
    return {
        "state": TaskState.PENDING,
        "run_at": now,
        "attempt": 0,
        "rescues": 0,
        "owner": None,
        "deadline": None,
        "cancel_requested": False,
        "result": "null",
        "finished_at": None,
        "updated_at": now,
    }


def _public(task: Task) -> Task:
    return replace(task, payload=json.loads(task.payload), result=json.loads(task.result))


def _make(url: str, **options: Any) -> MemoryStore:
    if url.rstrip("/") != "memory:":
        raise ConfigError(f"store URL {url!r}: memory:// takes no host, path or query")
    return MemoryStore(**options)


BACKEND = Backend(name="memory", schemes=("memory",), form="memory://", make=_make)
