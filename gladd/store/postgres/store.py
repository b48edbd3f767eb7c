"""The PostgreSQL task store (asyncpg): many nodes share one database.

Queries live in ``postgres/sql/queries.sql`` (named, constant text: asyncpg prepares each
once per connection and reuses it) and the schema in ``postgres/sql/NNNN_*.sql``, applied
by :meth:`PostgresStore.open` under a transaction-scoped advisory lock so nodes starting
together migrate exactly once.

Every operation is one round trip on a pooled connection, bounded by ``query_timeout``.
Driver errors are mapped at this boundary::

    StoreError          a query failed or timed out (the message names operation and timeout)
    └── StoreUnavailable  cannot reach or log in to the server: refused, DNS, password,
                          missing database, no connection slots, connection lost

Retrying (``guard``): the guard sees the driver's own exceptions, so the resilience
classifier knows them (connect / reset / timeout); what escapes it is mapped as above.
Every operation is safe to run again:

- ``finish``, ``heartbeat``, ``cancel``, ``retry``, ``rescue``, ``purge``: a write that
  already happened changes nothing the second time (a repeated ``finish`` reports False:
  the outcome was stored by the first attempt, under the same token). ``retry_many``,
  ``cancel_many``: the same, a chunk a statement; a repeat after an unknown outcome counts
  the tasks the first attempt changed as skipped.
- ``claim``: a claim whose commit outcome is unknown (timeout or connection lost after the
  statement went out) is never blindly repeated. Each claim carries a random ``claim_id``;
  a repeat first asks for the tasks taken under it and returns those if the first attempt
  committed. Should every attempt fail, the id is kept, and the worker's next claim asks
  for it first: a live worker gets back what the lost claim took.
- ``enqueue``: a repeat after an unknown outcome may store a task twice (at-least-once);
  tasks with a ``unique_key`` cannot be duplicated.
- ``advance_schedule``: a repeat after an unknown outcome finds the tick already moved if
  the first attempt committed, and stores nothing (it reports None, as for a lost race):
  a tick's tasks are stored once whatever happens.
- ``schedule_states``, ``forget_schedules``: a read, and a delete that changes nothing twice.
- ``claim_gated``: as ``claim``, with claim ids of its own (a lost gated claim is asked
  for by the worker's next gated claim). ``pause``, ``resume``, ``sweep_limits``,
  ``ring``: an upsert, a delete and a notification, the same the second time.

Wake-ups: an insert into ``gladd_tasks`` (by gladd or plain SQL) notifies the channel
``gladd_tasks`` through a statement trigger; a dedicated listening connection outside the
pool turns it into :meth:`PostgresStore.wait_for_work` returning True. When that connection
drops, it is re-established in the background and waits are plain timed polls meanwhile.
The same connection hears ``gladd_pauses`` (a pause or resume on any node) and moves
:attr:`PostgresStore.pause_epoch`, as it does once re-established. Once a task is
watched (:meth:`PostgresStore.watch`, a waiting client) it also LISTENs on
``gladd_task_events``, which the statements storing outcomes, rescues, progress and
cancels notify with the ids they changed: one connection for all of a client's waits.
A store made with ``listen_for_work=False`` (``gladd.Client``'s: it only enqueues) LISTENs
on ``gladd_tasks`` only from its first wait for work, so it is not sent a notification per
insert of its own.

Flow control, and why a gated claim is correct across nodes: :mod:`~gladd.store.postgres.flow`.

The parts of this store: :mod:`~gladd.store.postgres.errors` (the mapping above),
:mod:`~gladd.store.postgres.flow` (gated claims, gates' usage, pauses),
:mod:`~gladd.store.postgres.listener` (the listening connection),
:mod:`~gladd.store.postgres.rows` (values in and out of the queries) and
:mod:`~gladd.store.postgres.schema` (migrations).
"""

from __future__ import annotations

import builtins
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import asyncpg  # type: ignore[import-untyped]
from loguru import logger

from gladd.errors import (
    StoreError,
    StoreNotFound,
    StoreUnavailable,
    TaskRejected,
    TaskStateConflict,
)
from gladd.instruments.acquire import AcquireMeter
from gladd.store import timeline as tl
from gladd.store.base import (
    FINISHED_STATES,
    BulkChange,
    Enqueued,
    GatedClaim,
    MigrationStatus,
    NewTask,
    Outcome,
    PoolStats,
    ProgressReport,
    RescueReport,
    ScheduleState,
    StoreCapabilities,
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    TaskStats,
    TaskWatch,
    WorkerInfo,
)
from gladd.store.catalogue import KindSpec, PublishedKind, published
from gladd.store.gates import (
    GATED_SCAN,
    BreakerOverride,
    Gate,
    GatedRequest,
    LimitUsage,
    Pause,
)
from gladd.store.postgres import flow, listing
from gladd.store.postgres.errors import map_error
from gladd.store.postgres.listener import NotifyListener
from gladd.store.postgres.queries import Q
from gladd.store.postgres.rows import (
    fenced_args,
    finish_args,
    rescued,
    row_to_kind,
    row_to_schedule,
    row_to_task,
    row_to_task_with_timeline,
    sorted_claim,
)
from gladd.store.postgres.schema import LATEST, MIGRATIONS, apply_migrations
from gladd.store.postgres.writes import Advance, advance_schedule, enqueue_once, enqueue_rounds
from gladd.store.rules import (
    Wakeup,
    bulk_change,
    bulk_chunks,
    check_new_task,
    load_json,
    purge_states,
    unique_conflict,
    utc,
)
from gladd.store.urls import mask_url
from gladd.store.watch import Watchers, check_progress

if TYPE_CHECKING:
    from gladd.policies.model import DatabasePolicy

T = TypeVar("T")

PURGE_BATCH = 10_000


class QueryGuard(Protocol):
    """Wraps one store operation, e.g. the resilience engine's retry under the db policy."""

    def __call__(self, call: Callable[[], Awaitable[T]], /) -> Awaitable[T]: ...


class PostgresStore:
    """The :class:`~gladd.store.base.Store` on PostgreSQL; see the module docstring."""

    capabilities = StoreCapabilities(single_process=False)  # nodes share it: leases decide

    def __init__(
        self,
        url: str,
        *,
        query_timeout: float = 5.0,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        guard: QueryGuard | None = None,
        listen_for_work: bool = True,
    ) -> None:
        """``listen_for_work=False`` is for a store that only enqueues (``gladd.Client``):
        it does not LISTEN for new tasks until its first :meth:`wait_for_work`, so its own
        inserts' notifications are not sent to it (a round trip's worth of work each)."""
        self._dsn = url
        self._listen_for_work = listen_for_work
        self.url = mask_url(url)
        self._timeout = 0.0
        self.query_timeout = query_timeout
        self._min = pool_min_size
        self._max = pool_max_size
        self._guard = guard
        self._pool: Any = None
        self._applied: tuple[int, ...] = ()
        self._listener: NotifyListener | None = None
        self._unsettled_claims: dict[str, int] = {}  # worker → claim id of unknown outcome
        self._unsettled_gated: dict[str, int] = {}  # the same, of gated claims
        self.pause_epoch = 0  # see Store.pause_epoch
        self._wakeup = Wakeup()
        self._watchers = Watchers()
        self._acquires = AcquireMeter()

    @property
    def query_timeout(self) -> float:
        """Seconds each operation (and each wait for a pooled connection) may take; may be
        changed while the store is open (a reload of ``database.query_timeout``)."""
        return self._timeout

    @query_timeout.setter
    def query_timeout(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"query_timeout must be longer than 0s (got {seconds})")
        self._timeout = seconds

    def prepare_retune(self, database: DatabasePolicy) -> Callable[[], None]:
        """The query timeout changes live; the pool sizes and the URL need a restart."""
        seconds = database.query_timeout
        if not seconds > 0:  # what the setter would refuse, refused before the commit
            raise ValueError(f"database.query_timeout must be longer than 0s (got {seconds})")

        def commit() -> None:
            self.query_timeout = seconds

        return commit

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self, *, migrate: bool = True, create: bool = True) -> None:
        if self._pool is not None:
            return
        self._wakeup = Wakeup()
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min,
                max_size=self._max,
                timeout=max(self._timeout, 1.0),
                # No command_timeout: _run bounds each operation by the current
                # query_timeout instead, so a reload can change it.
                init=_init_connection,
                reset=_reset_connection,
                # The claim must walk the partial claim index in order. On a table whose
                # statistics lag behind a burst of enqueues the planner would rather sort
                # every pending row per claim (25x slower); none of gladd's queries needs a
                # sort it could not get from an index, so sorting is priced out. That price
                # makes any plan with a sort look huge, which would wake the JIT compiler
                # (300 ms per enqueue): short OLTP statements never gain from JIT anyway.
                server_settings={
                    "application_name": "gladd",
                    "enable_sort": "off",
                    "enable_bitmapscan": "off",
                    "jit": "off",
                },
            )
        except Exception as exc:
            raise map_error("open", exc, self.url, self._timeout) from exc
        if not migrate:
            return
        try:
            if not create:
                await self._require_schema()
            # Bounded per statement inside (it may wait for another node's migration).
            self._applied = await self._run("migrate", self._migrate, bounded=False)
            self._listener = NotifyListener(
                self._dsn,
                url=self.url,
                timeout=self._timeout,
                notify=self._on_notify,
                paused=self._pauses_changed,
                events=self._tasks_changed,
                work=self._listen_for_work,
            )
            await self._listener.listen()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._watchers.changed_all()  # a watcher finds the store closed when it reads
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.move_on_after(self._timeout) as scope:
                await pool.close()
            if scope.cancelled_caught:
                pool.terminate()

    async def _require_schema(self) -> None:
        async def work(conn: Any) -> bool:
            return await conn.fetchval("SELECT to_regclass('gladd_migrations')") is not None

        if not await self._run("open", work):
            raise StoreNotFound(
                f"the database at {self.url} has no gladd tables (nothing was created): "
                "`gladd db migrate` or `gladd run` creates them, or choose another database"
            )

    async def _migrate(self, conn: Any) -> tuple[int, ...]:
        return await apply_migrations(conn, url=self.url, timeout=self._timeout)

    async def migration_status(self) -> MigrationStatus:
        async def work(conn: Any) -> tuple[int, ...]:
            if await conn.fetchval("SELECT to_regclass('gladd_migrations')") is None:
                return ()
            rows = await conn.fetch("SELECT version FROM gladd_migrations ORDER BY version")
            return tuple(int(r["version"]) for r in rows)

        done = await self._run("migration_status", work)
        return MigrationStatus(
            current=max(done, default=0),
            latest=LATEST,
            applied=self._applied,
            known=tuple(v for v, _ in MIGRATIONS),
            done=done,
        )

    # -- tasks -------------------------------------------------------------------------

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued:
        return (await self.enqueue_many([task], now=now))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask], *, now: datetime) -> list[Enqueued]:
        now = utc(now)
        checked = [check_new_task(task, now=now) for task in tasks]  # TaskRejected
        if not tasks:
            return []

        async def round_(args: tuple[Any, ...]) -> dict[int, Enqueued]:
            # Its own statement and transaction: a retried round never repeats an earlier one.
            async def work(conn: Any) -> dict[int, Enqueued]:
                return await enqueue_once(conn, args)

            return await self._run("enqueue", work)

        failure = f"enqueue: unique keys kept changing hands at {self.url}; try again"
        return await enqueue_rounds(tasks, checked, now, round_, failure)

    # -- schedules ---------------------------------------------------------------------

    async def schedule_states(self) -> dict[str, ScheduleState]:
        async def work(conn: Any) -> dict[str, ScheduleState]:
            rows = await conn.fetch(Q["schedule_states"])
            return {state.name: state for state in map(row_to_schedule, rows)}

        return await self._run("schedule_states", work)

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
        now = utc(now)
        advance = Advance(
            name=name,
            spec=spec,
            expected=None if expected is None else utc(expected, "expected"),
            to=utc(to, "to"),
            now=now,
        )
        checked = [check_new_task(task, now=now) for task in tasks]  # TaskRejected

        async def work(conn: Any) -> list[Enqueued] | None:
            return await advance_schedule(conn, advance, tasks, checked)

        return await self._run("advance_schedule", work)

    async def forget_schedules(self, keep: Collection[str]) -> int:
        names = sorted(keep)

        async def work(conn: Any) -> int:
            status = await conn.execute(Q["forget_schedules"], names)
            return int(status.rsplit(" ", 1)[-1])

        return await self._run("forget_schedules", work)

    # -- the kinds catalogue -------------------------------------------------------------

    async def publish_kinds(self, node: str, kinds: Sequence[KindSpec], *, now: datetime) -> None:
        rows = published(node, list(kinds), utc(now))
        columns = (
            [k.name for k in rows],
            [k.plugin for k in rows],
            [k.description for k in rows],
            [None if k.payload_schema is None else json.dumps(k.payload_schema) for k in rows],
            [json.dumps(list(k.services)) for k in rows],
        )

        async def work(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(Q["kinds_forget_node"], node)
                if rows:
                    await conn.execute(Q["kinds_publish"], node, utc(now), *columns)

        await self._run("publish_kinds", work)

    async def kinds_catalogue(self) -> list[PublishedKind]:
        async def work(conn: Any) -> list[PublishedKind]:
            return [row_to_kind(row) for row in await conn.fetch(Q["kinds_catalogue"])]

        return await self._run("kinds_catalogue", work)

    # -- running -----------------------------------------------------------------------

    async def claim(
        self, *, worker: str, limit: int, now: datetime, kinds: Sequence[str] | None = None
    ) -> list[Task]:
        now = utc(now)
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        # A claim of this worker's that failed after it went out may have committed: its
        # id is asked after first, so its tasks are not left running under a live worker.
        unsettled = self._unsettled_claims.pop(worker, None)
        claim_id = secrets.randbits(63) if unsettled is None else unsettled
        sent = unsettled is not None
        at = now.isoformat()  # the timeline's entries' time, formatted once

        async def work(conn: Any) -> list[Task]:
            nonlocal sent
            if sent:  # an earlier attempt's outcome is unknown: did it commit?
                rows = await conn.fetch(Q["claimed_by"], worker, claim_id)
                if rows:
                    return sorted_claim(rows)
            sent = True
            if kinds is None:
                rows = await conn.fetch(Q["claim"], worker, now, limit, claim_id, at)
            else:
                rows = await conn.fetch(Q["claim_kinds"], worker, now, limit, claim_id, kinds, at)
            return sorted_claim(rows)

        try:
            return await self._run("claim", work)
        except BaseException:
            if sent:
                self._unsettled_claims[worker] = claim_id
            raise

    # -- flow control (postgres/flow.py) ---------------------------------------------

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
        """See :mod:`~gladd.store.postgres.flow` for why it is correct across nodes; an
        unanswered commit is handled as :meth:`claim` handles it (its own claim ids)."""
        now = utc(now)
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        unsettled = self._unsettled_gated.pop(worker, None)
        request = GatedRequest(
            worker=worker,
            limit=limit,
            now=now,
            kinds=tuple(kinds),
            gates=tuple(gates),
            scan=scan,
            claim_id=secrets.randbits(63) if unsettled is None else unsettled,
            ended=tuple(ended),
        )
        sent = unsettled is not None

        async def work(conn: Any) -> GatedClaim:
            nonlocal sent
            if sent:  # an earlier attempt's outcome is unknown: did it commit?
                rows = await conn.fetch(Q["claimed_by"], worker, request.claim_id)
                if rows:
                    stand = await flow.usage_of(conn, gates, now)
                    return GatedClaim(
                        tasks=sorted_claim(rows), usage=stand.usage, held=0, next_at=None
                    )
            sent = True
            tasks, plan = await flow.claim_gated(conn, request)
            return GatedClaim(tasks=tasks, usage=plan.usage, held=plan.held, next_at=plan.next_at)

        try:
            return await self._run("claim_gated", work)
        except BaseException:
            if sent:
                self._unsettled_gated[worker] = request.claim_id
            raise

    async def limit_usage(self, gates: Sequence[Gate], *, now: datetime) -> LimitUsage:
        now = utc(now)

        async def work(conn: Any) -> LimitUsage:
            return await flow.limit_usage(conn, gates, now)

        return await self._run("limit_usage", work)

    async def pauses(self, *, now: datetime) -> list[Pause]:
        now = utc(now)

        async def work(conn: Any) -> list[Pause]:
            return [flow.row_to_pause(row) for row in await conn.fetch(Q["pauses"], now)]

        return await self._run("pauses", work)

    async def pause(self, pause: Pause) -> Pause:
        stored = replace(
            pause,
            until=None if pause.until is None else utc(pause.until, "until"),
            created_at=utc(pause.created_at, "created_at"),
        )
        args = (stored.target, stored.reason, stored.until, stored.by, stored.created_at)

        async def work(conn: Any) -> None:
            await conn.execute(Q["pause"], *args)

        await self._run("pause", work)
        self._pauses_changed()
        return stored

    async def resume(self, target: str, *, now: datetime) -> Pause | None:
        now = utc(now)

        async def work(conn: Any) -> Pause | None:
            row = await conn.fetchrow(Q["resume"], target)
            return None if row is None else flow.row_to_pause(row)

        removed = await self._run("resume", work)
        self._pauses_changed()
        return removed if removed is not None and removed.active(now) else None

    async def breaker_overrides(self) -> list[BreakerOverride]:
        async def work(conn: Any) -> list[BreakerOverride]:
            return [_row_to_override(row) for row in await conn.fetch(Q["breaker_overrides"])]

        return await self._run("breaker_overrides", work)

    async def isolate_breaker(self, override: BreakerOverride) -> BreakerOverride:
        stored = replace(override, created_at=utc(override.created_at, "created_at"))

        async def work(conn: Any) -> None:
            await conn.execute(Q["isolate_breaker"], stored.name, stored.by, stored.created_at)

        await self._run("isolate_breaker", work)
        self._pauses_changed()
        return stored

    async def reset_breaker(self, name: str) -> BreakerOverride | None:
        async def work(conn: Any) -> BreakerOverride | None:
            row = await conn.fetchrow(Q["reset_breaker"], name)
            return None if row is None else _row_to_override(row)

        removed = await self._run("reset_breaker", work)
        self._pauses_changed()
        return removed

    async def ring(self) -> None:
        async def work(conn: Any) -> None:
            await conn.execute(Q["ring"])

        await self._run("ring", work)

    async def sweep_limits(self, *, now: datetime, idle: float) -> int:
        now = utc(now)
        cutoff = flow.bucket_cutoff(now, idle)

        async def work(conn: Any) -> int:
            return int(await conn.fetchval(Q["sweep_limits"], now, cutoff))

        return await self._run("sweep_limits", work)

    # -- outcomes ----------------------------------------------------------------------

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        now = utc(now)
        if not outcomes:
            return []
        args, first = finish_args(outcomes, now)

        async def work(conn: Any) -> set[int]:
            return {row["id"] for row in await conn.fetch(Q["finish"], *args)}

        held = await self._run("finish", work)
        applied = [i in first and o.id in held for i, o in enumerate(outcomes)]
        if not all(applied):
            await self._fenced([o for o, ok in zip(outcomes, applied, strict=True) if not ok], now)
        return applied

    async def _fenced(self, outcomes: Sequence[Outcome], now: datetime) -> None:
        """Outcomes whose tokens did not hold: their tasks' timelines say so. Only then,
        after the finish, so the finish of the many that hold pays nothing for it."""
        args = fenced_args(outcomes, now)

        async def work(conn: Any) -> None:
            await conn.execute(Q["fenced"], *args)

        try:
            await self._run("finish", work)
        except StoreError as exc:  # a note only: the finish stands, the caller goes on
            logger.warning("the timeline's fenced entries were not stored: {}", exc)

    async def record_progress(
        self, reports: Sequence[ProgressReport], *, now: datetime
    ) -> list[bool]:
        now = utc(now)
        checked = check_progress(reports)
        if not checked:
            return []
        args = (
            now,
            [r.id for r in checked],
            [r.token for r in checked],
            [r.fraction for r in checked],
            [r.message for r in checked],
            [r.attempt for r in checked],
        )

        async def work(conn: Any) -> set[tuple[int, int]]:
            return {(row["id"], row["token"]) for row in await conn.fetch(Q["progress"], *args)}

        stored = await self._run("record_progress", work)
        return [(r.id, r.token) in stored for r in checked]

    @asynccontextmanager
    async def watch(self, task_id: int) -> AsyncIterator[TaskWatch]:
        listener = self._listener
        if listener is None:
            raise StoreError(f"watch: the PostgreSQL store {self.url} is not open")
        async with self._watchers.watch(task_id) as watch:
            await listener.want_events()  # before the caller's first read
            yield watch

    def _tasks_changed(self, ids: list[int] | None) -> None:
        if ids is None:
            self._watchers.changed_all()
        else:
            self._watchers.changed(ids)

    async def heartbeat(
        self, *, worker: str, now: datetime, running: Sequence[tuple[int, int]]
    ) -> set[int]:
        now = utc(now)
        ids = [task_id for task_id, _ in running]
        tokens = [token for _, token in running]

        async def work(conn: Any) -> set[int]:
            return {r["id"] for r in await conn.fetch(Q["heartbeat"], worker, now, ids, tokens)}

        return await self._run("heartbeat", work)

    async def rescue(self, *, now: datetime, lease: float, max_rescues: int) -> RescueReport:
        now = utc(now)

        async def work(conn: Any) -> RescueReport:
            async with conn.transaction():
                dead = {r["id"] for r in await conn.fetch(Q["rescue_dead_workers"], now, lease)}
                victims = await conn.fetch(Q["rescue_victims"], now)
                verdicts = [rescued(row, now, max_rescues) for row in victims]
                if verdicts:
                    ids, states, errors, entries = (
                        list(column) for column in zip(*verdicts, strict=True)
                    )
                    await conn.execute(Q["rescue_apply"], now, ids, states, errors, entries)
            lost = dead | {r["owner"] for r in victims if not r["live"] and r["owner"]}
            return RescueReport(
                to_pending=tuple(v[0] for v in verdicts if v[1] == TaskState.PENDING),
                to_dead=tuple(v[0] for v in verdicts if v[1] == TaskState.DEAD),
                dead_workers=tuple(sorted(lost)),
            )

        return await self._run("rescue", work)

    async def forget_worker(self, worker: str) -> None:
        async def work(conn: Any) -> None:
            await conn.execute(Q["forget_worker"], worker)

        await self._run("forget_worker", work)

    async def get(self, task_id: int) -> Task | None:
        async def work(conn: Any) -> Task | None:
            row = await conn.fetchrow(Q["get"], task_id)
            return None if row is None else row_to_task_with_timeline(row)

        return await self._run("get", work)

    async def list(
        self,
        *,
        state: TaskState | None = None,
        kind: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Task]:
        state_text = None if state is None else str(state)
        # Running tasks are few however many tasks there are: read them from their partial
        # index on every plan (a generic `state = $1` plan may scan the table for them).
        query = Q["list_running"] if state is TaskState.RUNNING else Q["list"]

        async def work(conn: Any) -> list[Task]:
            rows = await conn.fetch(query, state_text, kind, before_id, limit)
            return [row_to_task(row) for row in rows]

        return await self._run("list", work)

    async def cancel(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        now = utc(now)

        async def work(conn: Any) -> Task | None:
            await conn.fetch(Q["cancel_many"], [task_id], now, by)
            row = await conn.fetchrow(Q["get"], task_id)
            return None if row is None else row_to_task(row)

        return await self._run("cancel", work)

    async def retry(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        now = utc(now)
        entries = tl.dumps([tl.entry(now, tl.RETRIED, by=by)])

        async def work(conn: Any) -> Task | None:
            try:
                row = await conn.fetchrow(Q["retry"], task_id, now, entries)
            except asyncpg.UniqueViolationError:
                key = await conn.fetchval(
                    "SELECT unique_key FROM gladd_tasks WHERE id = $1", task_id
                )
                holder = await conn.fetchval(Q["unfinished_id_by_key"], key)
                raise unique_conflict(task_id, key, holder) from None
            return None if row is None else row_to_task(row)

        return await self._run("retry", work)

    async def retry_many(
        self, ids: Sequence[int], *, now: datetime, by: str | None = None
    ) -> BulkChange:
        now = utc(now)
        entries = tl.dumps([tl.entry(now, tl.RETRIED, by=by)])
        return await self._each_chunk("retry_many", ids, now, entries)

    async def cancel_many(
        self, ids: Sequence[int], *, now: datetime, by: str | None = None
    ) -> BulkChange:
        return await self._each_chunk("cancel_many", ids, utc(now), by)

    async def _each_chunk(
        self, op: str, ids: Sequence[int], now: datetime, arg: str | None
    ) -> BulkChange:
        """The named query ``op`` on each chunk of ``ids``, a statement each."""

        async def work(conn: Any, chunk: list[int]) -> list[int]:
            for tries in range(3):
                try:
                    rows = await conn.fetch(Q[op], chunk, now, arg)
                    return [row["id"] for row in rows if row["id"] is not None]
                except asyncpg.UniqueViolationError:
                    # A task took a key meanwhile and was not committed when the statement
                    # looked: it is now, and the next run sees it holds the key.
                    if tries == 2:
                        raise
            raise AssertionError("unreachable")

        changed: list[int] = []
        for chunk in bulk_chunks(ids):
            changed.extend(await self._run(op, partial(work, chunk=chunk)))
        return bulk_change(ids, changed)

    async def purge(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        finished_before = utc(finished_before, "finished_before")
        names = list(purge_states(states))

        async def work(conn: Any) -> int:
            status = await conn.execute(Q["purge"], finished_before, PURGE_BATCH, names)
            return int(status.rsplit(" ", 1)[-1])

        total = 0
        while True:  # bounded batches: each statement stays well under the query timeout
            deleted = await self._run("purge", work)
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    async def count_purgeable(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        finished_before = utc(finished_before, "finished_before")
        names = list(purge_states(states))

        async def work(conn: Any) -> int:
            return int(await conn.fetchval(Q["count_purgeable"], finished_before, names))

        return await self._run("count_purgeable", work)

    async def counts(self) -> dict[TaskState, int]:
        return (await self.stats()).totals

    async def stats(self) -> TaskStats:
        return await self._run("stats", listing.stats)

    async def find(self, where: TaskFilter, *, limit: int, before: int | None = None) -> TaskPage:
        return await self._run("find", lambda c: listing.find(c, where, limit, before))

    async def find_ids(
        self, where: TaskFilter, *, limit: int, before: int | None = None
    ) -> builtins.list[int]:
        return await self._run("find_ids", lambda c: listing.find_ids(c, where, limit, before))

    async def count_matching(self, where: TaskFilter) -> int:
        return await self._run("count_matching", lambda c: listing.count_matching(c, where))

    async def workers(self) -> builtins.list[WorkerInfo]:
        return await self._run("workers", listing.workers)

    def pool_stats(self) -> PoolStats:
        pool, meter = self._pool, self._acquires
        size = pool.get_size() if pool is not None else 0
        idle = pool.get_idle_size() if pool is not None else 0
        return PoolStats(
            backend="postgresql",
            pooled=True,
            open=pool is not None,
            size=size,
            idle=idle,
            in_use=max(0, size - idle),
            max_size=self._max,
            waiting=meter.waiting,
            acquisitions=meter.acquisitions,
            acquire_wait_total=meter.total_wait,
            longest_wait=meter.longest_wait(),
        )

    # -- wake-ups ----------------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> bool:
        listener = self._listener
        if listener is not None and not listener.work_wanted:
            # A store opened with listen_for_work=False waits after all: it listens from
            # now on, and wakes at once, for an enqueue before this would have gone unheard.
            await listener.want_work()
            return True
        return await self._wakeup.wait(timeout)

    def _on_notify(self) -> None:
        self._wakeup.notify()

    def _pauses_changed(self) -> None:
        """A pause or resume, ours or another node's (the listener hears gladd_pauses and
        calls this too, as it does once re-established): readers re-read the pauses, and
        waiters claim again (a resumed kind may have work)."""
        self.pause_epoch += 1
        self._wakeup.notify()

    # -- plumbing ----------------------------------------------------------------------

    async def _run(
        self, op: str, work: Callable[[Any], Awaitable[T]], *, bounded: bool = True
    ) -> T:
        """Run ``work`` on a pooled connection, under the guard, with errors mapped; each
        attempt at it is cancelled after ``query_timeout`` unless ``bounded`` is False."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"{op}: the PostgreSQL store {self.url} is not open")

        async def attempt() -> T:
            ticket = self._acquires.begin()
            try:
                # A cancel scope, not acquire(timeout=): asyncpg's own timeout wraps the
                # wait in a task of its own on every call (bench/bench_producer.py).
                with anyio.fail_after(self._timeout):
                    conn = await pool.acquire()
            except TimeoutError as exc:
                raise StoreUnavailable(
                    f"PostgreSQL store {self.url}: {op}: no connection within {self._timeout:g}s"
                    f" (query_timeout): all {self._max} pooled connections are busy, or the "
                    "server does not answer; check the server, or raise pool_max_size"
                ) from exc
            finally:
                self._acquires.end(ticket)
            try:
                with anyio.fail_after(self._timeout if bounded else None):
                    for tries in range(3):
                        try:
                            return await work(conn)
                        except asyncpg.DeadlockDetectedError:
                            # The server rolled it back: nothing happened, run it again.
                            if tries == 2:
                                raise
            finally:
                # Outside the deadline: a cancelled query is cleaned up here (asyncpg
                # waits for the server's cancellation, the reset rolls back).
                await pool.release(conn)
            raise AssertionError("unreachable")

        try:
            return await (attempt() if self._guard is None else self._guard(attempt))
        except (StoreError, TaskRejected, TaskStateConflict):
            raise
        except Exception as exc:
            raise map_error(op, exc, self.url, self._timeout) from exc


# -- pool hooks -------------------------------------------------------------------------


async def _reset_connection(conn: Any) -> None:
    """What the pool does to a connection handed back: gladd keeps no session state on
    pooled connections (LISTEN has its own), so only an unfinished transaction is undone;
    asyncpg's default reset costs a round trip on every release."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=load_json, schema="pg_catalog")


def _row_to_override(row: Any) -> BreakerOverride:
    return BreakerOverride(
        name=row["name"], state=row["state"], by=row["by"], created_at=row["created_at"]
    )
