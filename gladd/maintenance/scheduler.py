"""The schedule enqueuer: each ``[schedules.NAME]`` tick becomes one task, exactly once
across every node, without a leader.

Every node runs one. It sleeps until the earliest tick of any schedule is due, reads where
each schedule stands in the store (:class:`~gladd.store.base.ScheduleState`: the last tick
handled), asks the pure planner (:mod:`gladd.maintenance.ticks`) what is due — the ticks to
fire, those to pass over (catch-up, window) — applies the overlap rule, and hands the store
the tick's tasks together with a compare-and-set of the schedule's ``last_tick``
(:meth:`~gladd.store.base.Store.advance_schedule`). The store lets exactly one node's
compare-and-set succeed for each ``last_tick``: that node's transaction stores the tasks;
every other node's changes nothing and makes it re-read. A node dying mid-way commits all
of a tick or nothing of it, so a tick is never lost (the next node to look fires it, late
by at most its sleep) and never doubled. The row per schedule is the "unique key per
schedule and tick": unlike a task's ``unique_key`` it also holds once the task finished.

A schedule seen for the first time, or whose timing changed (``spec``), starts from its
latest tick at or before now: a new or edited schedule never fires for the past. Reloads
wake the enqueuer (:meth:`Scheduler.wake`); a removed schedule fires no more, and a paused
one is not looked at until it is resumed, when its catch-up rule decides about the ticks
it missed.

A task carries its tick as ``task.scheduled_for`` (``ctx.task.scheduled_for`` in a handler)
and the schedule's name as ``task.schedule``; it becomes due at the tick plus the
schedule's jitter, the same on every node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.maintenance.ticks import jitter_for, latest_tick, plan, spec_of, ticks_after
from gladd.policies import Policies
from gladd.policies.model import SchedulePolicy
from gladd.store import NewTask, ScheduleState, Store, TaskState

IDLE_WAIT = 60.0
"""Seconds between looks when no schedule is due sooner (a reload wakes it earlier)."""
RETRY_WAIT = 1.0
"""Seconds before looking again after the store failed, or another node won a tick."""
UNFINISHED = (TaskState.PENDING, TaskState.RUNNING)

MakeTask = Callable[[str, SchedulePolicy, datetime, datetime], NewTask]
"""``(name, schedule, tick, run_at)`` → the task to store (the executor fills in the kind's
retry policy and priority)."""
OnTicks = Callable[[str, str, int], None]
"""``(schedule, outcome, count)``: ``fired``, ``caught_up`` (fired late) or ``skipped``."""
OnLateness = Callable[[float], None]


@dataclass(slots=True, kw_only=True, eq=False)
class Scheduler:
    """``await tg.start(scheduler.run)``; :meth:`pass_once` is one look, for tests."""

    store: Store
    policies: Callable[[], Policies]
    now: Callable[[], datetime]
    make_task: MakeTask
    on_ticks: OnTicks | None = None
    on_lateness: OnLateness | None = None
    fired: int = field(default=0, init=False)
    skipped: int = field(default=0, init=False)
    _wake: anyio.Event = field(default_factory=anyio.Event, init=False)
    _failing: bool = field(default=False, init=False)
    states: dict[str, ScheduleState] = field(default_factory=dict, init=False)
    """Where each schedule stood at the last look (health reads it)."""
    _next: dict[str, tuple[str, datetime, datetime]] = field(default_factory=dict, init=False)
    """Per schedule: (spec, last_tick, next due) as last planned, so a look at a schedule
    that is not due costs a comparison, not a plan."""

    def wake(self) -> None:
        """Look again now (a reload may have added, changed or resumed a schedule)."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            wait = await self.pass_once()
            with anyio.move_on_after(wait):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def pass_once(self) -> float:
        """Fire what is due now; the seconds until the next look."""
        schedules = {n: s for n, s in self.policies().schedules.items() if not s.paused}
        if not schedules:
            return IDLE_WAIT
        try:
            states = await self.store.schedule_states()
            if states.keys() - self.policies().schedules.keys():
                await self.store.forget_schedules(keep=self.policies().schedules.keys())
        except StoreError as exc:
            self._store_failed(exc)
            return RETRY_WAIT
        self.states = states
        now = self.now()
        next_look = now + timedelta(seconds=IDLE_WAIT)
        for name, schedule in schedules.items():
            try:
                due = await self._look(name, schedule, states.get(name), now)
            except StoreError as exc:
                self._store_failed(exc)
                return RETRY_WAIT
            if due is None:  # another node won: read again at once
                return 0.0
            next_look = min(next_look, due)
        if self._failing:
            logger.success("schedules: the store answers again")
            self._failing = False
        return max(0.0, (next_look - self.now()).total_seconds())

    async def _look(
        self, name: str, schedule: SchedulePolicy, state: ScheduleState | None, now: datetime
    ) -> datetime | None:
        """Fire ``name``'s due ticks; when to look at it next, or None when another node
        advanced it first."""
        spec = spec_of(schedule)
        if state is None or state.spec != spec:
            base = latest_tick(schedule, now)
            expected = state.last_tick if state is not None else None
            done = await self.store.advance_schedule(
                name, spec=spec, expected=expected, to=base, tasks=(), now=now
            )
            if done is None:
                return None
            if state is not None:
                logger.info("schedule {}: timing changed; next tick recomputed", name)
            return ticks_after(schedule, base, 1)[0]
        known = self._next.get(name)
        if known is not None and known[:2] == (spec, state.last_tick) and known[2] > now:
            return known[2]
        p = plan(schedule, last_tick=state.last_tick, now=now)
        if p.advance_to is None:
            self._next[name] = (spec, state.last_tick, p.next_due)
            return p.next_due
        fire, overlapped = _overlap(schedule, p.fire, state.last_state)
        tasks = [
            self.make_task(
                name, schedule, tick, tick + _seconds(jitter_for(name, tick, schedule.jitter))
            )
            for tick in fire
        ]
        done = await self.store.advance_schedule(
            name, spec=spec, expected=state.last_tick, to=p.advance_to, tasks=tasks, now=now
        )
        if done is None:
            return None
        self._next[name] = (spec, p.advance_to, p.next_due)
        self._report(name, fire, p.skipped, overlapped, late=min(p.late, len(fire)), now=now)
        return p.next_due

    def _report(
        self,
        name: str,
        fire: tuple[datetime, ...],
        skipped: tuple[datetime, ...],
        overlapped: tuple[datetime, ...],
        *,
        late: int,
        now: datetime,
    ) -> None:
        self.fired += len(fire)
        self.skipped += len(skipped) + len(overlapped)
        for tick in fire:
            lateness = max(0.0, (now - tick).total_seconds())
            if self.on_lateness is not None:
                self.on_lateness(lateness)
            logger.info(
                "schedule {}: tick {} enqueued ({:.3f}s after it)", name, _at(tick), lateness
            )
        if skipped:
            logger.warning(
                "schedule {}: {} tick(s) skipped by its catch-up rule ({} to {})",
                name,
                len(skipped),
                _at(skipped[0]),
                _at(skipped[-1]),
            )
        if overlapped:
            logger.warning(
                "schedule {}: tick {} skipped: its previous run is unfinished (overlap)",
                name,
                ", ".join(_at(t) for t in overlapped),
            )
        if self.on_ticks is not None:
            counts = (
                ("fired", len(fire) - late),
                ("caught_up", late),
                ("skipped", len(skipped) + len(overlapped)),
            )
            for outcome, count in counts:
                if count:
                    self.on_ticks(name, outcome, count)

    def _store_failed(self, exc: StoreError) -> None:
        if not self._failing:
            logger.warning(
                "schedules: the store failed; looking again in {:g}s: {}", RETRY_WAIT, exc
            )
            self._failing = True


def _overlap(
    schedule: SchedulePolicy, fire: tuple[datetime, ...], last: TaskState | None
) -> tuple[tuple[datetime, ...], tuple[datetime, ...]]:
    """(ticks to fire, ticks skipped for overlap): ``skip`` fires nothing while the last run
    is unfinished; ``buffer_one`` queues one run behind a running one, none behind a pending
    one; ``allow`` fires everything."""
    if not fire or schedule.overlap == "allow" or last not in UNFINISHED:
        return fire, ()
    if schedule.overlap == "buffer_one" and last is TaskState.RUNNING:
        return fire[-1:], fire[:-1]
    return (), fire


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def describe_schedules(
    policies: Policies, states: dict[str, ScheduleState], now: datetime
) -> list[dict[str, object]]:
    """Each schedule as ``gladd schedules`` and ``GET /schedules`` show it."""
    shown: list[dict[str, object]] = []
    for name, schedule in sorted(policies.schedules.items()):
        state = states.get(name)
        if state is not None and state.spec == spec_of(schedule):
            after = max(now, state.last_tick)
        else:
            after = now
        upcoming = ticks_after(schedule, after, 1)[0]
        shown.append(
            {
                "name": name,
                "cron": schedule.cron,
                "every": schedule.every,
                "timezone": schedule.timezone,
                "kind": schedule.kind,
                "paused": schedule.paused,
                "next_fire": None if schedule.paused else upcoming.isoformat(),
                "last_tick": state.last_tick.isoformat() if state is not None else None,
                "last_fired_at": (
                    state.last_fired_at.isoformat()
                    if state is not None and state.last_fired_at is not None
                    else None
                ),
                "last_task": state.last_task if state is not None else None,
                "last_outcome": (
                    state.last_state.value
                    if state is not None and state.last_state is not None
                    else None
                ),
            }
        )
    return shown
