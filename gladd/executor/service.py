"""Operating on tasks: enqueue, inspect, cancel, retry, purge — shared by the CLI, the admin
API and the Python API so each answers the same way.

Everything a caller hands in is checked here, before any store sees it: what no store can
keep (NUL, lone surrogates, nesting, ranges: :mod:`gladd.store.rules`), what the kind's
schema refuses, and what its plugin knows cannot run under the current policies. A task id
that cannot exist (outside a signed 64-bit integer) is simply not found.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from gladd.durations import parse_duration
from gladd.errors import (
    BatchRejected,
    BatchTooLarge,
    ItemProblem,
    TaskRejected,
    TaskStateConflict,
    UnknownSchedule,
    UnknownTask,
)
from gladd.executor.decide import new_task, scheduled_task
from gladd.executor.enqueue import store_new_task, store_new_tasks
from gladd.executor.flow import (
    gates_of,
    holds,
    normal_target,
    policy_pauses,
    target_kinds,
    wait_reasons,
)
from gladd.executor.group_commit import GroupCommit
from gladd.executor.kinds import KindRegistry
from gladd.executor.runner import utcnow
from gladd.executor.waiting import wait_finished, wait_seconds
from gladd.maintenance.scheduler import describe_schedules
from gladd.policies import Policies
from gladd.resilience.guards import task_breaker_id
from gladd.resilience.state import BreakerState
from gladd.store import Enqueued, NewTask, Store, Task, TaskState
from gladd.store.base import FINISHED_STATES
from gladd.store.gates import Pause
from gladd.store.rules import json_problem, text_problem

MAX_BATCH = 10_000
"""Tasks one batch enqueue may hold: one transaction, so a bound on its size and time."""
ITEM_FIELDS = ("kind", "payload", "delay", "priority", "unique_key", "timeout")
"""What an item of a batch enqueue may say: :meth:`TaskService.enqueue`'s arguments."""
_ITEM_FIELDS = frozenset(ITEM_FIELDS)
MAX_REASON = 500
"""Characters a pause's reason may have."""
MAX_DELAY = 3650 * 86400.0
"""Ten years: a delay, or a per-task timeout, beyond it is a mistake (and past ~292,000
years it would not even fit the stores' clocks)."""
TASK_IDS = range(-(2**63), 2**63)
"""Ids are signed 64-bit integers in every store; nothing outside is asked for."""
CANCELLABLE = (TaskState.PENDING, TaskState.RUNNING)
RETRYABLE = (TaskState.DEAD, TaskState.CANCELLED)


class TaskService:
    def __init__(
        self,
        store: Store,
        kinds: KindRegistry,
        policies: Callable[[], Policies],
        now: Callable[[], datetime] = utcnow,
        breaker_state: Callable[[str], BreakerState | None] | None = None,
    ) -> None:
        """``breaker_state`` (the daemon's): the state of a task kind's breaker on this
        node, for :meth:`waiting`."""
        self.store = store
        self.breaker_state = breaker_state
        self.kinds = kinds
        self.policies = policies
        self.now = now
        self.group = GroupCommit(store=store)
        """Enqueues arriving together share one transaction (:mod:`.group_commit`)."""

    async def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        delay: float | str = 0.0,
        priority: int | None = None,
        unique_key: str | None = None,
        timeout: float | str | None = None,
        trace: Mapping[str, str] | None = None,
        source: str = "python",
    ) -> Enqueued:
        """Validate and store a task; raises TaskRejected before storing anything.

        ``delay`` and ``timeout`` are seconds or duration text (``"30s"``, ``"1m30s"``): every
        entry point (CLI, admin API, Python clients) shares this one coercion.

        With traces on, the enqueue is a span in the caller's trace — ``trace`` holds its
        ``traceparent`` (and ``tracestate``) when it came from outside this process (an
        HTTP header, the CLI's environment), otherwise the current span is its parent.
        ``source`` is who enqueued it, for its timeline: cli, http, python or schedule."""
        now = self.now()
        try:
            spec = self._checked(
                self.policies(),
                now,
                kind,
                payload,
                delay=delay,
                priority=priority,
                unique_key=unique_key,
                timeout=timeout,
                source=source,
            )
        except _Refused as exc:
            raise exc.rejection from exc.rejection.__cause__
        return await store_new_task(self.group, spec, now=now, trace=trace)

    async def enqueue_many(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        trace: Mapping[str, str] | None = None,
        refused: Sequence[ItemProblem] = (),
        source: str = "python",
    ) -> builtins.list[Enqueued]:
        """Validate every item as :meth:`enqueue` validates one, then store them all in one
        transaction; ``Enqueued`` in item order (a unique key already held, or held by an
        earlier item, gives that task with ``created`` False).

        Each item is a mapping of :data:`ITEM_FIELDS` (``kind`` required). Any item refused
        raises :class:`BatchRejected` listing every refused item, and nothing is stored;
        more than :data:`MAX_BATCH` items raise :class:`BatchTooLarge`. ``refused`` holds
        the problems a caller found already in reading the items (the admin API's field
        types): their items are not checked again, and their problems are listed with the
        others. With traces on, the batch is one PRODUCER span (see
        :func:`store_new_tasks`)."""
        if len(items) > MAX_BATCH:
            raise BatchTooLarge(len(items), MAX_BATCH)
        if not items:
            return []
        policies, now = self.policies(), self.now()
        specs: builtins.list[NewTask] = []
        problems = builtins.list(refused)
        skipped = {p.index for p in refused}
        defaults: dict[str, tuple[int, int]] = {}  # each kind's, looked up once a batch
        for index, item in enumerate(items):
            if index in skipped:
                continue
            try:
                specs.append(self._checked_item(policies, now, item, defaults, source))
            except _Refused as exc:
                problems.append(ItemProblem(index=index, field=exc.field, message=str(exc)))
        if problems:
            problems.sort(key=lambda p: p.index)  # stable: an item's own order stays
            raise BatchRejected(problems, size=len(items))
        return await store_new_tasks(self.store, specs, now=now, trace=trace)

    def _checked_item(
        self,
        policies: Policies,
        now: datetime,
        item: object,
        defaults: dict[str, tuple[int, int]],
        source: str,
    ) -> NewTask:
        if type(item) is not dict and not isinstance(item, Mapping):
            raise _Refused("", TaskRejected(f"an item must be an object (got {_brief(item)})"))
        if not _ITEM_FIELDS.issuperset(item):
            unknown = [str(name) for name in item if name not in ITEM_FIELDS]
            shown = ", ".join(_brief(name) for name in unknown[:5])
            fields = ", ".join(ITEM_FIELDS)
            raise _Refused("", TaskRejected(f"unknown field {shown} (fields: {fields})"))
        if "kind" not in item:
            raise _Refused("kind", TaskRejected("required"))
        return self._checked(
            policies,
            now,
            item["kind"],
            item.get("payload"),
            delay=item.get("delay", 0.0),
            priority=item.get("priority"),
            unique_key=item.get("unique_key"),
            timeout=item.get("timeout"),
            defaults=defaults,
            source=source,
        )

    def _checked(
        self,
        policies: Policies,
        now: datetime,
        kind: Any,
        payload: Any,
        *,
        delay: Any,
        priority: Any,
        unique_key: Any,
        timeout: Any,
        defaults: dict[str, tuple[int, int]] | None = None,
        source: str = "python",
    ) -> NewTask:
        """The task to store, or :class:`_Refused` naming the field and the first problem:
        every check an enqueue gets, before any store sees it."""
        # _Refused raised where the field is known: a context manager per field cost a batch
        # of 1,000 about 3 ms (bench/bench_producer.py).
        if not isinstance(kind, str):
            raise _refused("kind", f"kind must be a string (got {_brief(kind)})")
        if (problem := text_problem(kind)) is not None:
            raise _refused("kind", f"kind {problem} (got {kind!r})")
        try:
            handler = self.kinds.require(kind)
        except TaskRejected as exc:
            raise _Refused("kind", exc) from exc
        payload = {} if payload is None else payload
        if (problem := json_problem(payload, "payload")) is not None:
            raise _refused("payload", f"payload for {kind} refused: {problem}")
        try:
            handler.check(handler.parse(payload), policies)
        except TaskRejected as exc:
            raise _Refused("payload", exc) from exc
        if not (type(delay) is float and delay == 0.0):  # no delay: nothing to check
            delay = _field_seconds("delay", delay, low=0.0, inclusive=True)
        if priority is not None and (
            isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1000
        ):
            raise _refused(
                "priority",
                f"priority must be a whole number from -1000 to 1000 (got {_brief(priority)})",
            )
        if timeout is not None:
            timeout = _field_seconds("timeout", timeout, low=0.0, inclusive=False)
        if unique_key is not None and not isinstance(unique_key, str):
            raise _refused("unique_key", f"unique_key must be a string (got {_brief(unique_key)})")
        if unique_key is not None and (problem := text_problem(unique_key)) is not None:
            raise _refused("unique_key", f"unique_key {problem}")
        return new_task(
            policies,
            kind=kind,
            payload=payload,
            run_at=now + timedelta(seconds=delay) if delay else now,
            priority=priority,
            unique_key=unique_key,
            timeout=timeout,
            defaults=defaults,
            source=source,
        )

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule of the policies with its next fire and where it stands."""
        states = await self.store.schedule_states()
        return describe_schedules(self.policies(), states, self.now())

    async def run_schedule(self, name: str) -> Enqueued:
        """One run of schedule ``name`` now, outside its ticks (a test, a backfill): its
        task, with ``scheduled_for`` now. A paused schedule runs too: it was asked for."""
        policies = self.policies()
        schedule = policies.schedules.get(name)
        if schedule is None:
            known = ", ".join(sorted(policies.schedules)) or "none"
            shown = name if len(name) <= 80 else name[:80] + "…"
            raise UnknownSchedule(f"no schedule {shown!r} in the policies (schedules: {known})")
        now = self.now()
        spec = scheduled_task(policies, name, schedule, now, now)
        return await store_new_task(self.group, spec, now=now)

    async def get(self, task_id: int) -> Task:
        if task_id not in TASK_IDS:
            raise UnknownTask(f"no task with id {task_id} (task ids fit a signed 64-bit integer)")
        task = await self.store.get(task_id)
        if task is None:
            raise UnknownTask(f"no task with id {task_id}")
        return task

    async def wait(
        self,
        task_id: int,
        *,
        timeout: float | str | None = None,
        on_change: Callable[[Task], object] | None = None,
    ) -> Task:
        """The task once finished (:func:`gladd.executor.waiting.wait_finished`); a bad
        ``timeout`` is a ValueError."""
        seconds = wait_seconds(timeout)
        await self.get(task_id)  # UnknownTask, said as get says it
        return await wait_finished(self.store, task_id, timeout=seconds, on_change=on_change)

    async def cancel(self, task_id: int, *, by: str | None = None) -> Task:
        """Cancel a pending task, or ask a running one's worker to stop it; a finished task
        raises :class:`TaskStateConflict` (it is left as it is). ``by``: who asked, for the
        task's timeline."""
        before = await self.get(task_id)
        if before.state not in CANCELLABLE:
            raise _conflict(before, "cancelled")
        task = await self.store.cancel(before.id, now=self.now(), by=by)
        if task is None:
            raise UnknownTask(f"no task with id {task_id}")
        if task.state.finished and task.state is not TaskState.CANCELLED:
            raise _conflict(task, "cancelled")  # it finished meanwhile
        return task

    async def retry(self, task_id: int, *, by: str | None = None) -> Task:
        """Put a dead or cancelled task back to pending; any other raises
        :class:`TaskStateConflict` (it is left as it is). ``by``: who asked, for the
        task's timeline."""
        before = await self.get(task_id)
        if before.state not in RETRYABLE:
            raise _conflict(before, "retried")
        task = await self.store.retry(before.id, now=self.now(), by=by)
        if task is None:
            raise UnknownTask(f"no task with id {task_id}")
        return task

    async def waiting(self, task: Task) -> builtins.list[str]:
        """Why a pending task is not running now (empty for any other, or one that is due
        and free to start): see :func:`gladd.executor.flow.wait_reasons`."""
        if task.state is not TaskState.PENDING:
            return []
        policies, now = self.policies(), self.now()
        gates = [g for g in gates_of(policies) if task.kind in g.kinds]
        usage = await self.store.limit_usage(gates, now=now)
        held = holds(policies, await self.store.pauses(now=now), self.kinds, now)
        reasons = await self._breaker_reasons(task.kind, policies)
        return reasons + wait_reasons(
            kind=task.kind,
            payload=task.payload,
            run_at=task.run_at,
            policies=policies,
            held=held,
            usage=usage,
            now=now,
        )

    async def _breaker_reasons(self, kind: str, policies: Policies) -> builtins.list[str]:
        """Why the kind's breaker holds the task back: isolated by an operator (the store
        says, on every node), or open here (only the daemon knows)."""
        ident = task_breaker_id(policies, kind)
        if ident is None:
            return []
        for found in await self.store.breaker_overrides():
            if found.name == ident:
                return [
                    f"breaker {ident} isolated by operator {found.by} since "
                    f"{found.created_at.isoformat(timespec='seconds')} "
                    f"(`gladd breakers reset {ident}` lets it run)"
                ]
        state = self.breaker_state(kind) if self.breaker_state is not None else None
        if state in (BreakerState.OPEN, BreakerState.HALF_OPEN):
            return [f"breaker {ident} is {state.value} on this node (see `gladd breakers`)"]
        return []

    async def pauses(self) -> builtins.list[dict[str, Any]]:
        """Every pause in force: the policies' (``paused = true``) and the store's, each
        with the kinds it holds back."""
        policies, now = self.policies(), self.now()
        shown = [
            {
                "target": target,
                "source": "policies",
                "by": "policies",
                "reason": "paused = true in the policies",
                "until": None,
                "created_at": None,
                "kinds": sorted(target_kinds(target, policies, self.kinds)),
            }
            for target in policy_pauses(policies)
        ]
        shown += [
            pause_json(p, sorted(target_kinds(p.target, policies, self.kinds)))
            for p in await self.store.pauses(now=now)
        ]
        return shown

    async def pause(
        self,
        target: str,
        *,
        seconds: float | None = None,
        until: datetime | None = None,
        reason: str = "",
        by: str,
    ) -> Pause:
        """Pause ``target`` (a kind, ``service:``, ``limit:`` or ``cooldown:`` NAME) for
        ``seconds``, until ``until``, or until resumed; stored, so every node stops
        claiming its kinds. Replaces a pause already on it."""
        name = normal_target(target, self.policies(), self.kinds)
        now = self.now()
        if seconds is not None and until is not None:
            raise TaskRejected("a pause lasts for a duration or until a time, not both")
        if seconds is not None:
            _seconds("the pause's duration", seconds, low=0.0, inclusive=False)
            until = now + timedelta(seconds=seconds)
        elif until is not None:
            if until.tzinfo is None:
                raise TaskRejected(
                    f"until {until.isoformat()} has no time zone: add one, e.g. +00:00 or Z"
                )
            if until <= now:
                raise TaskRejected(
                    f"until {until.isoformat()} is not in the future (now: {now.isoformat()})"
                )
        if not isinstance(reason, str) or len(reason) > MAX_REASON:
            raise TaskRejected(f"the reason must be text of at most {MAX_REASON} characters")
        if (problem := text_problem(reason)) is not None:
            raise TaskRejected(f"the reason {problem}")
        pause = Pause(target=name, reason=reason, until=until, by=by, created_at=now)
        return await self.store.pause(pause)

    async def resume(self, target: str) -> Pause | None:
        """End the stored pause on ``target``; the pause ended, None if none was active.
        A pause written in the policies stays (the file says so); every node is woken to
        claim again."""
        name = normal_target(target, self.policies(), self.kinds)
        ended = await self.store.resume(name, now=self.now())
        await self.store.ring()
        return ended

    async def purge(
        self,
        *,
        older_than: float,
        states: Collection[TaskState] = FINISHED_STATES,
        dry_run: bool = False,
    ) -> int:
        """Delete the tasks in ``states`` finished longer than ``older_than`` seconds ago
        (with ``dry_run``, only count them); how many."""
        before = self.now() - timedelta(seconds=older_than)
        if dry_run:
            return await self.store.count_purgeable(finished_before=before, states=states)
        return await self.store.purge(finished_before=before, states=states)


class _Refused(Exception):
    """A check's :class:`TaskRejected` with the field it was about: a single enqueue
    raises ``rejection`` itself, a batch lists it as an :class:`ItemProblem`."""

    def __init__(self, field: str, rejection: TaskRejected) -> None:
        super().__init__(str(rejection))
        self.field = field
        self.rejection = rejection


def _refused(field: str, message: str) -> _Refused:
    return _Refused(field, TaskRejected(message))


def _conflict(task: Task, verb: str) -> TaskStateConflict:
    allowed = CANCELLABLE if verb == "cancelled" else RETRYABLE
    names = " or ".join(s.value for s in allowed)
    return TaskStateConflict(task.id, task.state.value, names, verb)


def _field_seconds(field: str, seconds: Any, *, low: float, inclusive: bool) -> float:
    try:
        return _seconds(field, seconds, low=low, inclusive=inclusive)
    except TaskRejected as exc:
        raise _Refused(field, exc) from exc


def _seconds(what: str, seconds: float | str, *, low: float, inclusive: bool) -> float:
    """``seconds`` as a delay or timeout: a finite number of seconds up to MAX_DELAY, given
    as a number or as duration text (``"30s"``), refused as the admin API refuses it."""
    if isinstance(seconds, str):
        try:
            seconds = parse_duration(seconds)
        except ValueError as exc:
            raise TaskRejected(f"{what}: {exc}") from None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        got = _brief(seconds)
        raise TaskRejected(
            f'{what} must be a number of seconds or a duration like "30s" (got {got})'
        )
    try:
        value = float(seconds)
    except OverflowError:  # an int beyond any float
        value = math.inf if seconds > 0 else -math.inf
    above = value >= low if inclusive else value > low
    if not (math.isfinite(value) and above and value <= MAX_DELAY):
        least = "at least" if inclusive else "more than"
        raise TaskRejected(
            f"{what} must be {least} {low:g}s and at most 3650d, ten years (got {value:g}s)"
        )
    return value


def _brief(value: object) -> str:
    """``repr(value)`` for a message, at most 80 characters (and never raising)."""
    try:
        text = repr(value)
    except ValueError:  # an int of more digits than Python will print
        return f"an integer of {value.bit_length() if isinstance(value, int) else '?'} bits"
    return text if len(text) <= 80 else text[:79] + "…"


def parse_state(state: str | None) -> TaskState | None:
    if state is None or state == "":
        return None
    try:
        return TaskState(state)
    except ValueError:
        known = ", ".join(s.value for s in TaskState)
        raise TaskRejected(f"unknown task state {state!r} (states: {known})") from None


def pause_json(pause: Pause, kinds: list[str]) -> dict[str, Any]:
    """A stored pause as the CLI's ``--json`` and the admin API show it."""
    return {
        "target": pause.target,
        "source": "store",
        "by": pause.by,
        "reason": pause.reason,
        "until": pause.until.isoformat() if pause.until else None,
        "created_at": pause.created_at.isoformat(),
        "kinds": kinds,
    }


def task_json(task: Task, *, timeline: bool = False) -> dict[str, Any]:
    """A task as the CLI's ``--json`` and the admin API show it; with its ``timeline``
    when asked (one task shown: only :meth:`Store.get` reads it, so a listing leaves it
    out rather than show it empty)."""
    shown = {
        "id": task.id,
        "kind": task.kind,
        "state": task.state.value,
        "payload": task.payload,
        "priority": task.priority,
        "run_at": task.run_at.isoformat(),
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "timeout": task.timeout,
        "unique_key": task.unique_key,
        "owner": task.owner,
        "token": task.token,
        "rescues": task.rescues,
        "cancel_requested": task.cancel_requested,
        "result": task.result,
        "errors": [
            {"type": e.type, "message": e.message, "attempt": e.attempt, "at": e.at.isoformat()}
            for e in task.errors
        ],
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
        "traceparent": task.traceparent,
        "schedule": task.schedule,
        "scheduled_for": task.scheduled_for.isoformat() if task.scheduled_for else None,
        "progress": progress_json(task),
    }
    if timeline:
        shown["timeline"] = [entry.to_json() for entry in task.timeline]
    return shown


def progress_json(task: Task) -> dict[str, Any] | None:
    """A task's last reported progress, as the CLI's ``--json`` and the admin API show it."""
    p = task.progress
    if p is None:
        return None
    return {
        "fraction": p.fraction,
        "message": p.message,
        "at": p.at.isoformat(),
        "attempt": p.attempt,
    }
