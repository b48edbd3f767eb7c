"""The background health checks: every couple of seconds, publish each component's state.

Requests to ``/health`` read the board these checks fill, so a probe never reaches the
database. Each check is built by a pure function of the figures (``*_check`` below); the
:class:`HealthChecker` only gathers the figures. The status rules, worst wins:

=======================  ===========================================================
check                    status
=======================  ===========================================================
database:responseTime    fail when the ping fails or takes longer than query_timeout;
                         warn above half of query_timeout. Readiness is the daemon's
                         ``database:connection``, which each ping feeds (``on_ping``)
database:connections     pass (the figures; the judging is pool:alerts')
pool:alerts              warn while a warn alert fires; fail while a critical one does
breakers:open            warn while any breaker is open, half-open or isolated
breakers:state           pass: every breaker built so far with its state (the judging is
                         breakers:open's), for ``gladd status``
executor:running         pass
executor:queued          pass (pending tasks in the whole store)
executor:deadLastHour    warn when a task went dead on this node within the hour
executor:timeoutRate     warn when ≥ 5 % of this node's attempts in the hour timed out
flow:pauses              warn while a pause (policies, CLI, API) or a service's cooldown
                         is in force, naming it and the kinds it holds back
policies:reload          pass: the last reload that did something (the daemon's own
                         policies:generation check warns while a rejection stands)
eventloop:lag            warn when the loop's peak lag since the last check reached
                         [event_loop].lag_threshold
=======================  ===========================================================
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from gladd.durations import format_duration
from gladd.errors import StoreError, StoreUnavailable
from gladd.executor.flow import FlowStatistics
from gladd.observe.health import Check, HealthBoard, Status
from gladd.observe.pool import Alert, Level
from gladd.observe.reloads import Reload
from gladd.observe.watched import Watched
from gladd.policies import Policies
from gladd.resilience.breaker import BreakerStats
from gladd.resilience.state import BreakerState
from gladd.store.base import PoolStats, ScheduleState, TaskState, TaskStats

INTERVAL = 2.0
"""Seconds between rounds of checks."""
COUNT_EVERY = 5
"""Rounds between reads of the task counts (a few rows the store keeps, migration 0009)."""
OPEN_POLL = 0.1
"""Seconds between looks (no query) at a store that has not opened yet."""
FAILING_POLL = 1.0
"""Seconds between pings of a failing store (each failure is logged by the guard)."""
HOUR = 3600.0
TIMEOUT_RATE_WARN = 0.05  # the origin document's target: task timeouts < 5 %

_OPEN_STATES = frozenset({BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.ISOLATED})


# -- the checks, as pure functions of their figures -------------------------------------------


def database_check(
    response: float | None, error: str | None, *, query_timeout: float, at: float
) -> Check:
    if response is None:
        return Check(
            component="database",
            measurement="responseTime",
            status=Status.FAIL,
            observed_unit="ms",
            output=error or "no answer",
            at=at,
        )
    slow = response > query_timeout / 2
    return Check(
        component="database",
        measurement="responseTime",
        status=Status.WARN if slow else Status.PASS,
        observed_value=round(response * 1000, 3),
        observed_unit="ms",
        output=f"slow: over half the query_timeout ({format_duration(query_timeout)})"
        if slow
        else None,
        at=at,
    )


def connections_check(stats: PoolStats, *, at: float) -> Check:
    if stats.pooled:
        output = (
            f"{stats.backend} pool: {stats.in_use} in use, {stats.idle} idle, size "
            f"{stats.size} of max {stats.max_size}, {stats.waiting} waiting"
        )
    elif stats.max_size == 1:
        state = "busy" if stats.in_use else "idle"
        output = f"{stats.backend}: one connection, not a pool ({state}, {stats.waiting} queued)"
    else:
        output = f"{stats.backend}: no connection (not a pool)"
    return Check(
        component="database",
        measurement="connections",
        observed_value=stats.in_use,
        observed_unit="connections",
        output=output if stats.open else f"{output}; the store is not open",
        at=at,
    )


def pool_alerts_check(firing: list[Alert], stats: PoolStats | None, *, at: float) -> Check:
    if stats is not None and not stats.pooled:
        output: str | None = f"{stats.backend} has no pool: pool alert rules do not apply"
        status = Status.PASS
    elif not firing:
        output, status = None, Status.PASS
    else:
        critical = any(a.level is Level.CRITICAL for a in firing)
        status = Status.FAIL if critical else Status.WARN
        output = ", ".join(a.describe() for a in firing)
    return Check(
        component="pool",
        measurement="alerts",
        status=status,
        observed_value=len(firing),
        observed_unit="alerts",
        output=output,
        at=at,
    )


def breakers_check(breakers: dict[tuple[str, str], BreakerStats], *, at: float) -> Check:
    tripped = sorted(
        (name, target, stats)
        for (name, target), stats in breakers.items()
        if stats.state in _OPEN_STATES
    )
    parts = []
    for name, target, stats in tripped:
        probe = f", probe in {format_duration(stats.retry_in)}" if stats.retry_in else ""
        parts.append(f"{name} for {target} ({stats.state.value}{probe})")
    return Check(
        component="breakers",
        measurement="open",
        status=Status.WARN if tripped else Status.PASS,
        observed_value=len(tripped),
        observed_unit="breakers",
        output=", ".join(parts) if parts else f"{len(breakers)} breaker(s), all closed",
        at=at,
    )


def breaker_states_check(breakers: dict[tuple[str, str], BreakerStats], *, at: float) -> Check:
    """Every breaker and its state; ``observedValue`` lists them for tools."""
    listed = [
        {
            "breaker": name,
            "service": target,
            "state": stats.state.value,
            "probeIn": stats.retry_in,
        }
        for (name, target), stats in sorted(breakers.items())
    ]
    parts = [f"{b['breaker']} for {b['service']} ({b['state']})" for b in listed]
    return Check(
        component="breakers",
        measurement="state",
        observed_value=listed,
        observed_unit="breakers",
        output=", ".join(parts) if parts else "no breaker built yet (each is built on first use)",
        at=at,
    )


def executor_checks(
    *,
    running: int | None,
    concurrency: int,
    queued: int | None,
    recent: tuple[int, int, int],
    at: float,
) -> list[Check]:
    """``recent``: (dead, timeouts, attempts) on this node within the last hour."""
    dead, timeouts, attempts = recent
    rate = timeouts / attempts if attempts else 0.0
    not_running = "not running (the task store is not open yet)"
    return [
        Check(
            component="executor",
            measurement="running",
            observed_value=running or 0,
            observed_unit="tasks",
            output=not_running if running is None else f"{running} of {concurrency} slots",
            at=at,
        ),
        Check(
            component="executor",
            measurement="queued",
            observed_value=queued,
            observed_unit="tasks",
            output=None if queued is not None else "not counted yet",
            at=at,
        ),
        Check(
            component="executor",
            measurement="deadLastHour",
            status=Status.WARN if dead else Status.PASS,
            observed_value=dead,
            observed_unit="tasks",
            output="see `gladd tasks list --state dead`" if dead else None,
            at=at,
        ),
        Check(
            component="executor",
            measurement="timeoutRate",
            status=Status.WARN if timeouts and rate >= TIMEOUT_RATE_WARN else Status.PASS,
            observed_value=round(rate, 4),
            observed_unit="ratio",
            output=f"{timeouts} of {attempts} attempts in the last hour timed out",
            at=at,
        ),
    ]


def schedules_check(policies: Policies, states: dict[str, ScheduleState], *, at: float) -> Check:
    """Warns while a schedule's last run died, naming the schedule and its task."""
    died = [
        f"schedule {name}: its last run, task {state.last_task}, died"
        for name, state in sorted(states.items())
        if name in policies.schedules and state.last_state is TaskState.DEAD
    ]
    return Check(
        component="schedules",
        measurement="last_run",
        status=Status.WARN if died else Status.PASS,
        observed_value=len(died),
        observed_unit="schedules",
        output="; ".join(died) if died else f"{len(policies.schedules)} schedule(s), none died",
        at=at,
    )


def pauses_check(flow: FlowStatistics, *, at: float) -> Check:
    """Warns while a pause or a cooldown is in force, naming each and the kinds it holds."""
    named = []
    for hold in flow.pauses:
        kinds = sorted(k for k, h in flow.held_kinds.items() if h == hold)
        named.append(f"{hold.describe()}; holds back: {', '.join(kinds) or 'no kind here'}")
    return Check(
        component="flow",
        measurement="pauses",
        status=Status.WARN if named else Status.PASS,
        observed_value=len(named),
        observed_unit="pauses",
        output="; ".join(named) if named else "no pause or cooldown: every kind is claimed",
        at=at,
    )


def reload_check(last: Reload | None, *, at: float) -> Check:
    """Informational: the daemon's own ``policies:generation`` warns about a rejection."""
    if last is None:
        return Check(component="policies", measurement="reload", output="none yet", at=at)
    output = f"{last.outcome} ({last.trigger}), generation {last.generation}"
    if last.detail:
        output += f": {last.detail}"
    return Check(
        component="policies",
        measurement="reload",
        observed_value=last.outcome,
        output=output,
        at=at,
    )


def lag_check(peak: float, threshold: float, *, at: float) -> Check:
    over = peak >= threshold
    return Check(
        component="eventloop",
        measurement="lag",
        status=Status.WARN if over else Status.PASS,
        observed_value=round(peak * 1000, 3),
        observed_unit="ms",
        output=f"blocked: over the lag threshold ({format_duration(threshold)}); see the log"
        if over
        else None,
        at=at,
    )


class Recent:
    """Counter differences over the last ``window`` seconds, from cumulative samples."""

    __slots__ = ("_samples", "window")

    def __init__(self, window: float = HOUR) -> None:
        self.window = window
        self._samples: deque[tuple[float, tuple[int, ...]]] = deque()

    def add(self, now: float, values: tuple[int, ...]) -> tuple[int, ...]:
        """Record ``values`` at ``now``; returns how much each grew within the window.
        The counters are taken to start from zero just before the first sample."""
        if not self._samples:
            self._samples.append((now, tuple(0 for _ in values)))
        self._samples.append((now, values))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()
        _, first = self._samples[0]
        return tuple(v - f for v, f in zip(values, first, strict=True))


# -- the subsystem ------------------------------------------------------------------------------


class HealthChecker:
    """``await tg.start(checker.run)``: one round at once, then every ``interval``."""

    def __init__(
        self,
        board: HealthBoard,
        watched: Watched,
        *,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_ping: Callable[[StoreError | None], None] | None = None,
    ) -> None:
        self.board = board
        self.watched = watched
        self.interval = interval
        self._clock = clock
        self._wall = wall
        self._on_ping = on_ping
        self._rounds = 0
        self._opened = False
        self._queued: int | None = None
        self._recent = Recent()
        self.response_time: float | None = None
        """The last ping's duration in seconds; None when it failed (read by metrics)."""
        self.counts: dict[TaskState, int] = {}
        """The last count of tasks per state in the store."""
        self.stats: TaskStats | None = None
        """The last count of tasks per kind and state (read by metrics); None before one."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Two loops: the database's checks wait on the network, the others never do, so a
        hung database cannot freeze what health says about the rest."""
        self.check_local()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._database_loop)
            task_status.started()
            while True:
                await anyio.sleep(self.interval)
                self.check_local()

    async def _database_loop(self) -> None:
        while True:
            await self.check_database()
            # Until the store opens (a free look, no query), and while it fails, look more
            # often: health should follow the database within a moment of its return.
            if not self._opened:
                await anyio.sleep(OPEN_POLL)
            else:
                failing = self.response_time is None
                await anyio.sleep(min(self.interval, FAILING_POLL) if failing else self.interval)

    async def check(self) -> None:
        """One round of every check."""
        self.check_local()
        await self.check_database()

    def check_local(self) -> None:
        """The checks that read only this process: pool, breakers, executor, loop, reload."""
        w = self.watched
        policies = w.policies()
        at = self._wall()
        stats = w.store.pool_stats()  # fresh: the monitor samples only every interval
        breakers = {k: b.stats() for k, b in w.resilience.breakers().items()}
        checks = [
            connections_check(stats, at=at),
            pool_alerts_check(w.pool.alerts.firing(), stats, at=at),
            breakers_check(breakers, at=at),
            breaker_states_check(breakers, at=at),
            *self._executor(policies.executor.concurrency, at),
            reload_check(w.reloads.last, at=at),
            schedules_check(policies, w.executor.schedule_states(), at=at),
            pauses_check(w.executor.flow(), at=at),
            lag_check(w.lag.take_peak(), policies.event_loop.lag_threshold, at=at),
        ]
        for check in checks:
            self.board.publish(check)

    async def check_database(self) -> None:
        """Ping the store (one tiny query) and, every few rounds, count its tasks. Until the
        store first opens, the daemon's own ``database:connection`` check speaks for it."""
        if not self._opened:
            if not self.watched.store.pool_stats().open:
                return
            self._opened = True
            self.check_local()  # its connections check said "not open" until now
        timeout = self.watched.policies().database.query_timeout
        response, error = await self._ping(timeout)
        if response is not None and self._rounds % COUNT_EVERY == 0:
            await self._count(timeout)
        self._rounds += 1
        self.board.publish(database_check(response, error, query_timeout=timeout, at=self._wall()))

    async def _ping(self, timeout: float) -> tuple[float | None, str | None]:
        started = self._clock()
        problem: StoreError | None = None
        try:
            with anyio.fail_after(timeout):
                await self.watched.store.migration_status()
        except TimeoutError:
            problem = StoreUnavailable(
                f"{self.watched.store.url}: no answer within {format_duration(timeout)} "
                "(query_timeout)"
            )
        except StoreError as exc:
            problem = exc
        self.response_time = None if problem else self._clock() - started
        if self._on_ping is not None:
            self._on_ping(problem)
        return self.response_time, None if problem is None else str(problem)

    async def _count(self, timeout: float) -> None:
        try:
            with anyio.fail_after(timeout):
                self.stats = await self.watched.store.stats()
                self.counts = self.stats.totals
        except (TimeoutError, StoreError):
            return  # the ping reports the database's trouble; keep the last count
        self._queued = self.counts.get(TaskState.PENDING, 0)

    def _executor(self, concurrency: int, at: float) -> list[Check]:
        w = self.watched
        s = w.executor.statistics() if w.executor_running() else None
        if s is None:
            recent = (0, 0, 0)
        else:
            grew = self._recent.add(self._clock(), (s.dead, s.timeouts, s.succeeded + s.failed))
            recent = (grew[0], grew[1], grew[2])
        return executor_checks(
            running=None if s is None else s.running,
            concurrency=concurrency,
            queued=self._queued,
            recent=recent,
            at=at,
        )
