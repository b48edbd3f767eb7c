"""The task store seam: one interface, three implementations (memory, SQLite, PostgreSQL).

The executor, the CLI and the admin API speak only to :class:`Store`; what they need to know
about an implementation is its :class:`StoreCapabilities`, never its name. Each
implementation is a :class:`Backend` in :mod:`gladd.store.registry`, and the contract suite
in ``tests/integration/test_store_contract.py`` runs the same assertions against every one
registered there. Time is always passed in (``now``, timezone-aware UTC) so tests drive it
exactly and every node of a cluster decides by the same clock the caller chose.

Ownership: a claim sets ``owner`` and bumps ``token`` (the fencing token). Every write
about a running task names the token it holds; a write with a stale token changes nothing
and reports ``False``, so a late result from a node presumed dead is discarded.

State changes, the only ones allowed::

    pending ──claim──▶ running ──succeed──▶ succeeded
       ▲                 │ ├───fail (retry_at)──▶ pending   (attempt spent)
       │                 │ ├───fail (no retry)──▶ dead
       │                 │ ├───release───────────▶ pending   (attempt refunded)
       │                 │ └───cancelled─────────▶ cancelled
       ├──rescue─────────┘   (owner dead or past deadline; dead after max_rescues)
       └──retry── dead | cancelled            pending ──cancel──▶ cancelled
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from gladd.store.catalogue import KindSpec, PublishedKind
from gladd.store.gates import (
    GATED_SCAN,
    BreakerOverride,
    Gate,
    GateUsage,
    LimitUsage,
    Pause,
)

if TYPE_CHECKING:
    from gladd.policies.model import DatabasePolicy
    from gladd.resilience.classify import RetryClass

JSON = Any
"""A value that ``json.dumps`` accepts."""


class TaskState(StrEnum):
    PENDING = "pending"  # waiting for run_at, then for a worker
    RUNNING = "running"  # claimed by `owner` under fencing `token`
    SUCCEEDED = "succeeded"  # finished; `result` holds the handler's return value
    DEAD = "dead"  # gave up: attempts or rescues exhausted, or a non-retryable error
    CANCELLED = "cancelled"  # an operator cancelled it

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED)


FINISHED_STATES = frozenset(s for s in TaskState if s.finished)
"""The states :meth:`Store.purge` may delete from: no transition leaves them but ``retry``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskError:
    """One failed attempt, kept in the task's error history."""

    type: str
    message: str
    attempt: int
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskProgress:
    """The last progress a handler reported (``ctx.progress``), kept through retries: the
    next attempt's first report replaces it, and ``attempt`` says which one reported it."""

    fraction: float  # 0.0 .. 1.0
    message: str | None
    at: datetime
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressReport:
    """A running task's progress, written by :meth:`Store.record_progress` under its
    fencing token."""

    id: int
    token: int
    fraction: float
    message: str | None
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """What an application hands over."""

    kind: str
    payload: JSON = field(default_factory=dict)
    priority: int = 0
    run_at: datetime | None = None  # None: now
    max_attempts: int = 5
    timeout: float | None = None  # seconds per attempt; None: the kind's policy decides
    unique_key: str | None = None  # at most one unfinished task per key
    traceparent: str | None = None  # the enqueuer's W3C trace context (gladd.tracing)
    schedule: str | None = None  # the periodic schedule that enqueued it, by name
    scheduled_for: datetime | None = None  # the schedule's tick it was enqueued for
    source: str = "python"  # who enqueued it: cli | http | python | schedule (its timeline)


@dataclass(frozen=True, slots=True, kw_only=True)
class TimelineEntry:
    """One entry of a task's timeline (:mod:`gladd.store.timeline`): when, what, and the
    fields its event carries (node, token, attempt, duration, reason, until, by...)."""

    at: datetime
    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "event": self.event, **self.fields}


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """A task as stored."""

    id: int
    kind: str
    payload: JSON
    state: TaskState
    priority: int
    run_at: datetime
    attempt: int  # attempts started so far (a refunded attempt is not counted)
    max_attempts: int
    timeout: float | None
    unique_key: str | None
    owner: str | None  # worker id while running
    token: int  # fencing token: bumped by every claim
    rescues: int  # times rescued from a dead owner or a blown deadline
    deadline: datetime | None  # while running: when the attempt is presumed hung
    cancel_requested: bool
    result: JSON
    errors: tuple[TaskError, ...]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    traceparent: str | None = None  # W3C trace context of the enqueue; attempts continue it
    schedule: str | None = None  # the periodic schedule that enqueued it, by name
    scheduled_for: datetime | None = None  # that schedule's tick it was enqueued for, UTC
    progress: TaskProgress | None = None  # the last ctx.progress stored; None: never reported
    started_at: datetime | None = None  # when its first attempt started; None: never
    # What happened to it, oldest first, bounded (gladd.store.timeline). Read by `get`
    # only: claims and listings leave it empty, to stay cheap; so two reads of one task
    # compare equal whether or not they carry it.
    timeline: tuple[TimelineEntry, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilter:
    """Which tasks :meth:`Store.find` lists (rules in :mod:`gladd.store.listing`): a field
    left empty matches any task."""

    states: frozenset[TaskState] = frozenset()  # any of these; empty: any state
    kind: str | None = None
    error: str | None = None  # in one of its errors' "type: message", ignoring case
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    max_id: int | None = None  # ids up to this one (a bulk action's fixed set)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPage:
    """One keyset page, newest first."""

    tasks: list[Task]
    next: str | None  # the cursor of the next page; None: this is the last


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStats:
    """How many tasks are in each state, per kind: every state of a kind that has tasks."""

    by_kind: Mapping[str, Mapping[TaskState, int]]

    @property
    def totals(self) -> dict[TaskState, int]:
        totals = dict.fromkeys(TaskState, 0)
        for states in self.by_kind.values():
            for state, n in states.items():
                totals[state] += n
        return totals


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """A worker row: a node's executor, last heard of when it claimed or sent a heartbeat."""

    id: str
    last_seen: datetime
    running: int  # tasks it holds now


@dataclass(frozen=True, slots=True, kw_only=True)
class Enqueued:
    """What an enqueue returns: the task's id, no more. A producer needs the id and whether
    it was new, and reading back a whole row per task was most of a batch's cost
    (bench/bench_producer.py); :meth:`Store.get` reads the task."""

    id: int
    created: bool  # False: an unfinished task with the same unique_key already existed


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleState:
    """Where one schedule stands in the store (gladd_schedules), shared by every node."""

    name: str
    spec: str  # fingerprint of the timing it was last advanced under
    last_tick: datetime  # the latest tick handled (fired or skipped), UTC
    last_task: int | None  # id of the last task it enqueued
    last_fired_at: datetime | None  # when that task was enqueued
    last_state: TaskState | None  # that task's state now; None when none or purged


@dataclass(frozen=True, slots=True, kw_only=True)
class GatedClaim:
    """What :meth:`Store.claim_gated` returns: the tasks started and how the gates stand."""

    tasks: list[Task]
    usage: dict[str, GateUsage]  # per gate name, counting the tasks just started
    held: int  # due candidates seen but held back by a full gate
    next_at: datetime | None  # earliest time a rate-held candidate gets a token


# Outcomes of running attempts, written in batches by `Store.finish`.


# Each carries, for the task's timeline, how long its attempt took (seconds; None: not
# measured) and the node that ran it (named in a `fenced` entry when its token is stale).


@dataclass(frozen=True, slots=True, kw_only=True)
class Succeeded:
    id: int
    token: int
    result: JSON = None
    duration: float | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """A failed attempt: back to pending at ``retry_at``, or dead when it is None."""

    id: int
    token: int
    error: TaskError
    retry_at: datetime | None
    duration: float | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Released:
    """Back to pending at ``run_at`` without spending the attempt (stop, snooze, breaker).

    ``reason`` says why, for the timeline's ``postponed`` entry: breaker, cooldown,
    bulkhead, stop, or snooze (recorded as ``snoozed``); ``why`` in words."""

    id: int
    token: int
    run_at: datetime
    reason: str = "released"
    why: str = ""
    duration: float | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancelled:
    """A running task stopped because an operator cancelled it."""

    id: int
    token: int
    duration: float | None = None
    node: str | None = None


Outcome = Succeeded | Failed | Released | Cancelled


@dataclass(frozen=True, slots=True, kw_only=True)
class RescueReport:
    to_pending: tuple[int, ...]
    to_dead: tuple[int, ...]
    dead_workers: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationStatus:
    current: int
    latest: int
    applied: tuple[int, ...]  # applied when this store was opened
    known: tuple[int, ...] = ()  # the versions this gladd has, in order
    done: tuple[int, ...] = ()  # the versions the database has had

    @property
    def pending(self) -> tuple[int, ...]:
        """Versions this gladd knows that the database has not had yet. Numbers may have
        gaps (parts developed side by side each take one), and a version below ``current``
        may still be pending: migrations are applied by number, whichever are missing."""
        return tuple(v for v in self.known if v not in self.done)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStats:
    """The store's connections right now, for the pool monitor, health and metrics.

    ``pooled`` is False for a store with one connection (SQLite) or none (memory): the pool
    alert rules do not apply to it, and its figures are reported as they are, not as a pool.
    The acquire figures are cumulative, so any number of readers may take differences.
    """

    backend: str  # "postgresql", "sqlite" or "memory"
    pooled: bool
    open: bool
    size: int  # connections open now
    idle: int
    in_use: int
    max_size: int
    waiting: int = 0  # callers waiting for a connection now
    acquisitions: int = 0  # connections handed out (or given up on) since the store was made
    acquire_wait_total: float = 0.0  # seconds those acquisitions waited, summed
    longest_wait: float = 0.0  # seconds the longest-waiting caller has waited so far

    @property
    def utilization(self) -> float:
        """In-use connections as a fraction of the maximum (0 when there is none)."""
        return self.in_use / self.max_size if self.max_size else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCapabilities:
    """What the daemon may need to know about a store, asked instead of its name."""

    # One daemon serves the store at a time and its tasks outlive the process (a SQLite
    # file): at start, every task still running is an earlier run's, rescued at once
    # rather than after a lease.
    single_process: bool


def nothing_to_retune() -> None:
    """The commit of a store with no ``[database]`` field it takes live."""


class TaskWatch(Protocol):
    """A watch on one task (:meth:`Store.watch`), set up before its reader looks at it."""

    async def changed(self, timeout: float) -> bool:
        """Sleep until the task may have changed since the watch began or the last call
        (finished, progress, an outcome: here, in another process or on another node) or
        ``timeout`` passes; True when woken. A hint only: the caller reads the task."""


class Store(Protocol):
    """Durable tasks. Every method is safe to call from many tasks and, for PostgreSQL,
    from many nodes at once."""

    url: str  # with any password masked: safe to log
    capabilities: StoreCapabilities

    def prepare_retune(self, database: DatabasePolicy) -> Callable[[], None]:
        """What a reload changes on this open store (pool sizes and the URL need a
        restart): checked now, raising ValueError for what the store refuses, and applied
        by the returned commit, which cannot fail (:func:`nothing_to_retune` when no field
        applies)."""

    async def open(self, *, migrate: bool = True, create: bool = True) -> None:
        """Connect and apply pending migrations (safe when nodes start together).

        ``create=False`` refuses a store that is not there yet — a SQLite file that does not
        exist, a database without gladd's tables — with :class:`StoreNotFound`, creating
        nothing: what commands that operate on the daemon's store pass, so a wrong path is
        an error rather than a new, empty store. ``migrate=False`` only connects, for reading
        :meth:`migration_status` as it is (and implies ``create=False`` for a SQLite file):
        such a store must not be used for tasks."""

    async def close(self) -> None: ...

    async def migration_status(self) -> MigrationStatus: ...

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued: ...

    async def enqueue_many(self, tasks: Sequence[NewTask], *, now: datetime) -> list[Enqueued]: ...

    async def schedule_states(self) -> dict[str, ScheduleState]:
        """Every schedule the store knows, by name, with the state of its last task now."""

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
        """Move schedule ``name`` from tick ``expected`` to tick ``to`` and store ``tasks``,
        all in one transaction; None, changing nothing, when another node got there first.

        A compare-and-set on the schedule's row: with ``expected`` None the row must not
        exist yet (it is inserted), otherwise its ``last_tick`` must equal ``expected``
        exactly. On success ``last_tick`` becomes ``to``, ``spec`` becomes ``spec`` and
        ``updated_at`` ``now``; ``tasks`` are enqueued as :meth:`enqueue_many` would (the
        same refusals, unique keys respected) and, when there were any, ``last_task`` is the
        last one's id and ``last_fired_at`` is ``now``. Returns the tasks' ``Enqueued`` (an
        empty list for no tasks). When the compare fails — the row's ``last_tick`` differs,
        or it exists although ``expected`` is None — nothing changes and None is returned.

        This is what makes each tick fire exactly once across nodes without a leader: a
        tick's tasks are stored only by the node whose compare-and-set succeeds. A refused
        task (:class:`~gladd.errors.TaskRejected`) rolls everything back. Times must be
        timezone-aware (ValueError otherwise)."""

    async def forget_schedules(self, keep: Collection[str]) -> int:
        """Delete the rows of schedules not named in ``keep`` (removed from the policies);
        returns how many. Their tasks are left as they are."""

    async def publish_kinds(self, node: str, kinds: Sequence[KindSpec], *, now: datetime) -> None:
        """Make ``kinds`` what ``node`` serves, published at ``now``: its earlier rows are
        replaced in one transaction (a kind left out is gone; an empty list forgets the
        node). Other nodes' rows are untouched. A kind named twice raises ValueError."""

    async def kinds_catalogue(self) -> list[PublishedKind]:
        """Every node's published kinds, by kind name and then node (empty when no daemon
        ever published here)."""

    async def claim(
        self, *, worker: str, limit: int, now: datetime, kinds: Sequence[str] | None = None
    ) -> list[Task]:
        """Claim up to ``limit`` due pending tasks (priority desc, run_at, id): each becomes
        running, owned by ``worker``, with ``attempt`` + 1, a new ``token``, and ``deadline``
        = now + its timeout (tasks without a timeout get none). ``kinds`` restricts the
        kinds claimed (None: any)."""

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
        """Claim, as :meth:`claim` does, up to ``limit`` due pending tasks of ``kinds`` (a
        subset of the gates' kinds: paused ones left out), looking at the first ``scan`` in
        claim order and taking each only if every gate covering its kind has room
        (:func:`gladd.store.gates.plan_claim`); spend their tokens. Running tasks of every
        kind of a gate count against it, whatever ``kinds`` says — except ``ended``:
        tasks of ``worker`` whose attempts have ended although their outcomes are not
        stored yet (their handlers run no more, so their slots are free; another worker's
        tasks are never left out). Correct across nodes: no two claims together exceed a
        gate (each store's docstring says why)."""

    async def limit_usage(self, gates: Sequence[Gate], *, now: datetime) -> LimitUsage:
        """Running tasks and tokens (refilled to ``now``) per gate and partition; only
        partitions with running tasks or a stored bucket appear."""

    async def pauses(self, *, now: datetime) -> list[Pause]:
        """The pauses active at ``now`` (until None or later), by target."""

    async def pause(self, pause: Pause) -> Pause:
        """Store ``pause``, replacing any on its target; every node's store learns of it
        (its :attr:`pause_epoch` moves) within a second."""

    async def resume(self, target: str, *, now: datetime) -> Pause | None:
        """Remove the pause on ``target``; the one removed if it was active, else None.
        Announced as :meth:`pause` is."""

    async def breaker_overrides(self) -> list[BreakerOverride]:
        """The breakers operators isolated, by name."""

    async def isolate_breaker(self, override: BreakerOverride) -> BreakerOverride:
        """Store ``override`` (replacing any of its name); announced as :meth:`pause` is."""

    async def reset_breaker(self, name: str) -> BreakerOverride | None:
        """Remove breaker ``name``'s override; the one removed, or None. Announced as
        :meth:`pause` is."""

    pause_epoch: int
    """Moves whenever pauses or breaker overrides may have changed: this store's own
    writes, another node's or process's (NOTIFY on PostgreSQL, the doorbell on SQLite), a
    re-established listener. A reader re-reads :meth:`pauses` (:meth:`breaker_overrides`)
    when it moved."""

    async def ring(self) -> None:
        """Wake every waiter of :meth:`wait_for_work`, on every node (gate room freed)."""

    async def sweep_limits(self, *, now: datetime, idle: float) -> int:
        """Delete expired pauses and token buckets not touched for ``idle`` seconds (a
        bucket that old is full again, for any rate ≥ burst / idle); returns how many."""

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        """Apply outcomes in one round trip; each bool says whether the token still held.
        An outcome whose token no longer holds changes nothing but its task's timeline
        (a ``fenced`` entry naming the outcome's node and token)."""

    async def record_progress(
        self, reports: Sequence[ProgressReport], *, now: datetime
    ) -> list[bool]:
        """Store each running task's progress (``progress_at`` = ``now``) in one round trip;
        each bool says whether its token still held (a rescued task's old attempt reports
        into nothing). ValueError for a fraction outside 0..1. Watchers hear of it."""

    def watch(self, task_id: int) -> AbstractAsyncContextManager[TaskWatch]:
        """Watch task ``task_id`` for changes, whoever makes them: enter, read the task,
        then ``await watch.changed(timeout)`` and read again (no change between the read
        and the wait is missed). Each store's docstring says how it hears of changes."""

    async def heartbeat(
        self, *, worker: str, now: datetime, running: Sequence[tuple[int, int]]
    ) -> set[int]:
        """Record that ``worker`` is alive and still runs ``running`` (id, token); returns the
        ids among them whose cancellation was requested."""

    async def rescue(self, *, now: datetime, lease: float, max_rescues: int) -> RescueReport:
        """Tasks of workers not heard from for ``lease`` seconds, and running tasks past
        their deadline, go back to pending (rescues + 1) or to dead once rescues would exceed
        ``max_rescues``. Their tokens are bumped, fencing out the old owner."""

    async def forget_worker(self, worker: str) -> None:
        """A worker leaving cleanly; its tasks must already be released."""

    async def get(self, task_id: int) -> Task | None: ...

    async def list(
        self,
        *,
        state: TaskState | None = None,
        kind: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Task]:
        """Newest first; ``before_id`` pages."""

    async def cancel(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        """Pending: cancelled at once. Running: ``cancel_requested`` set (the owner sees it
        at its next heartbeat). Finished: unchanged. None if no such task. The timeline
        records who asked (``by``) when it changed something."""

    async def retry(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        """Dead or cancelled → pending now, with a fresh allowance of attempts. Others
        unchanged. None if no such task. The timeline records ``retried`` by ``by``."""

    async def purge(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        """Delete the tasks in ``states`` that finished before the given time; returns how
        many. ``states`` must be finished states (ValueError otherwise)."""

    async def count_purgeable(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        """How many tasks :meth:`purge` with these arguments would delete now; deletes none."""

    async def counts(self) -> dict[TaskState, int]:
        """Tasks per state: :meth:`stats`' totals."""

    async def stats(self) -> TaskStats:
        """Tasks per kind and state, kept by the database as tasks change (triggers, so
        plain SQL counts too): no scan of the tasks, however many."""

    async def find(self, where: TaskFilter, *, limit: int, before: int | None = None) -> TaskPage:
        """Up to ``limit`` tasks matching ``where`` with ids below ``before``, newest first;
        the page's ``next`` is the cursor of the following one (None at the end)."""

    async def count_matching(self, where: TaskFilter) -> int:
        """How many tasks match ``where`` now."""

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Every worker row, by id, with the tasks it holds."""

    def pool_stats(self) -> PoolStats:
        """The connections as they are now; no I/O, cheap enough for every scrape."""

    async def wait_for_work(self, timeout: float) -> bool:
        """Sleep until a task may be due (an enqueue, here or on another node) or
        ``timeout`` passes; True when woken. A hint only: the caller claims to find out."""


StoreGuard = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""Wraps each operation of a store that talks to a server (the daemon's database guard:
the ``[database]`` retry policy on connection errors)."""


def no_tuning(database: DatabasePolicy, guard: StoreGuard | None) -> dict[str, Any]:
    """The constructor options of a store that takes nothing from ``[database]``."""
    return {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """One kind of store, as the factory, the resilience classifier and the contract suite
    meet it; listed in :mod:`gladd.store.registry`."""

    name: str  # as its PoolStats.backend says it
    schemes: tuple[str, ...]  # the URL schemes it takes, lower case
    form: str  # its URL as messages show it, e.g. "sqlite:///PATH"
    # (url, **constructor options) → an unopened store; imports the driver only when called.
    make: Callable[..., Store]
    # The constructor options that [database] (and the daemon's guard) give it.
    tuning: Callable[[DatabasePolicy, StoreGuard | None], dict[str, Any]] = no_tuning
    # Its driver's errors worth retrying, by qualified class name: the resilience classifier
    # learns them from the registry without importing the driver.
    transient: Mapping[str, RetryClass] = field(default_factory=dict)
    # The constructor options of a store that never waits for work (a client that only
    # enqueues and reads), e.g. PostgreSQL's: no LISTEN for new tasks.
    enqueue_only: Mapping[str, Any] = field(default_factory=dict)
