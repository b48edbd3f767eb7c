"""The embedded default store: one SQLite file, zero set-up.

Concurrency: one connection, used from one dedicated thread that runs every statement (a
queue feeds it; the event loop never blocks on SQLite). Every write is one ``BEGIN
IMMEDIATE`` transaction, so a claim, a batch of outcomes or a batch of enqueues is atomic,
and several processes on one file serialise on SQLite's write lock (WAL mode,
``busy_timeout``). A waiter for the lock longer than the busy timeout gets
:class:`~gladd.errors.StoreUnavailable`.

Durability: an enqueue commits with ``synchronous=FULL`` (the WAL is fsynced before the
commit returns), so an acknowledged task survives a power cut, not only a crash of the
process: issue 15, "a 201 means committed". The executor's own writes (claims, outcomes,
heartbeats) commit with ``synchronous=NORMAL``: one lost on a power cut costs a task run
again, which at-least-once already allows; and the next enqueue's fsync carries them too.

Storage: times are INTEGER microseconds since the Unix epoch (UTC), JSON is TEXT. The schema
is versioned by ``sqlite/sql/NNNN_name.sql`` files, applied at :meth:`SQLiteStore.open` in one
transaction and recorded in ``gladd_migrations``; a file migrated by a newer gladd is refused.

Watches (:meth:`SQLiteStore.watch`, what ``Client.wait`` waits on): this store's own writes
wake its watches at once; another process's commit (the daemon finishing the task, storing
its progress) is seen as a change of the database's files, through inotify
(:mod:`~gladd.store.sqlite.files`): the watch wakes, its reader reads the task again. Any
number of processes may watch, with any number of watches each: no socket to bind, nothing
to register in the database, nothing added to the daemon's writes.

Wake-ups: :meth:`SQLiteStore.wait_for_work` is woken at once by enqueues (and retries,
releases, rescues) made through this store object, and by those of stores in other
processes (the CLI, ``gladd.enqueue``), which ring the waiting store's doorbell
(:mod:`~gladd.store.sqlite.doorbell`) after they commit. For writers that cannot ring
(plain SQL, a second daemon) it also looks at the WAL file now and then
(``EXTERNAL_CHECK``: 50 ms soon after work, up to 500 ms when long idle; one stat() each);
when the file changed it asks SQLite whether another connection committed (``PRAGMA
data_version``, which this connection's own commits never change).

The semantics shared with every store (what is refused, cancel wins over pending, rescue
verdicts) live in :mod:`gladd.store.rules`; the contract suite holds every store to them.
Flow control (:mod:`~gladd.store.sqlite.flow`): a gated claim is one BEGIN IMMEDIATE
transaction, serialised with every other writer on the file. Another process's pause or
resume rings the doorbell; the store that hears it (or sees another connection's commit,
waiting or claiming) moves :attr:`SQLiteStore.pause_epoch`.

The parts of this store: :mod:`~gladd.store.sqlite.thread` (the database thread),
:mod:`~gladd.store.sqlite.flow` (gated claims, gates' usage, pauses),
:mod:`~gladd.store.sqlite.writes` (the statements that change rows),
:mod:`~gladd.store.sqlite.rows` (values in and out of rows),
:mod:`~gladd.store.sqlite.schema` (migrations) and :mod:`~gladd.store.sqlite.errors` (the
StoreError for a driver error).
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from gladd.errors import StoreError, StoreNotFound
from gladd.store import timeline as tl
from gladd.store.base import (
    FINISHED_STATES,
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
    Task,
    TaskFilter,
    TaskPage,
    TaskState,
    TaskStats,
    TaskWatch,
    WorkerInfo,
    nothing_to_retune,
)
from gladd.store.catalogue import KindSpec, PublishedKind, published
from gladd.store.gates import (
    GATED_SCAN,
    BreakerOverride,
    ClaimPlan,
    Gate,
    GatedRequest,
    LimitUsage,
    Pause,
)
from gladd.store.rules import (
    Wakeup,
    check_new_task,
    load_json,
    purge_states,
    unique_conflict,
    utc,
)
from gladd.store.sqlite import flow, listing
from gladd.store.sqlite.doorbell import Doorbell
from gladd.store.sqlite.errors import map_error
from gladd.store.sqlite.files import SETTLE, FileWatcher
from gladd.store.sqlite.queries import Q
from gladd.store.sqlite.rows import (
    from_us,
    row_to_kind,
    row_to_schedule,
    row_to_task,
    schema_text,
    text_value,
    to_us,
)
from gladd.store.sqlite.schema import apply_migrations, migrations
from gladd.store.sqlite.thread import DbThread
from gladd.store.sqlite.writes import (
    Advance,
    NewRow,
    Stamp,
    advance_schedule,
    fenced,
    insert,
    outcome_write,
    rescue_running,
)
from gladd.store.watch import Watchers, check_progress

if TYPE_CHECKING:
    from gladd.policies.model import DatabasePolicy

T = TypeVar("T")
MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING
EXTERNAL_CHECK = (0.05, 0.5)
"""Seconds between looks for other processes' commits while waiting: the first soon after
work was last seen, growing (a tenth of the idle time so far) to the second, so a long-idle
daemon wakes twice a second and one fed by another process finds its tasks in ~50 ms."""


def _file_signature(path: str) -> tuple[int, int] | None:
    """(mtime ns, size) of a file, None if absent: one local stat(), cheap enough for the loop."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _has_migrations_table(conn: sqlite3.Connection) -> bool:
    return conn.execute(Q["has_migrations_table"]).fetchone() is not None


def _purge_params(finished_before: datetime, states: Collection[TaskState]) -> dict[str, object]:
    return {
        "finished_before": to_us(utc(finished_before, "finished_before")),
        "states": json.dumps(list(purge_states(states))),
    }


def _new_rows(tasks: Sequence[NewTask], now: datetime) -> list[NewRow]:
    """``tasks`` checked (TaskRejected) and converted, in the event loop before the write."""
    rows = []
    for task in tasks:
        payload, run_at = check_new_task(task, now=now)
        rows.append(NewRow(new=task, payload=payload, run_at=to_us(run_at)))
    return rows


def add_functions(conn: sqlite3.Connection) -> None:
    """The SQL functions gladd's queries call (0007_timeline.sql): the timeline's bound, the
    rule every store shares, and a claim's entries."""
    conn.create_function("gladd_timeline", 2, tl.append_json, deterministic=True)
    conn.create_function("gladd_claimed", 5, tl.claimed_json, deterministic=True)


def _get(conn: sqlite3.Connection, task_id: int) -> Task | None:
    found = conn.execute(Q["get"], (task_id,)).fetchone()
    return None if found is None else row_to_task(found)


def _get_with_timeline(conn: sqlite3.Connection, task_id: int) -> Task | None:
    task = _get(conn, task_id)
    if task is None:
        return None
    (text,) = conn.execute(Q["timeline"], (task_id,)).fetchone()
    return replace(task, timeline=tl.read_entries(load_json(text) or ()))


# -- the store ------------------------------------------------------------------------------


class SQLiteStore:
    """Tasks in one SQLite file (``":memory:"`` works too, for one store object)."""

    capabilities = StoreCapabilities(single_process=True)  # one daemon per file

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._thread: DbThread | None = None
        self._wakeup: Wakeup | None = None
        self._applied: tuple[int, ...] = ()
        self._data_version = 0  # PRAGMA data_version last seen, in the database thread
        self._claim_data_version = 0  # the same, by the last claim (for pause_epoch)
        self._work_seen = 0.0  # anyio.current_time() when wait_for_work last found work
        self._doorbell = Doorbell(self.path) if self.path != ":memory:" else None
        self._answering = False  # a waiter is listening for the doorbell
        self._watchers = Watchers()
        self._files = (
            FileWatcher(self.path, self._watchers.changed_all) if self.path != ":memory:" else None
        )
        self.pause_epoch = 0  # see Store.pause_epoch: moved by our writes and any ring

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True, create: bool = True) -> None:
        if self._thread is not None:
            return
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old for gladd: it needs 3.35 or later"
            )
        if self.path != ":memory:":
            self._prepare_path(create=migrate and create)
        thread = DbThread(f"gladd-sqlite:{Path(self.path).name}")
        try:
            self._applied = await thread.call(lambda: self._connect_and_migrate(migrate, create))
        except BaseException:
            await thread.stop()
            raise
        self._thread = thread
        self._wakeup = Wakeup()
        self._work_seen = anyio.current_time()

    def _prepare_path(self, *, create: bool) -> None:
        if not create and not Path(self.path).exists():
            raise StoreNotFound(
                f"there is no SQLite database at {self.path} yet: `gladd db migrate` or "
                "`gladd run` creates it (nothing was created)"
            )
        parent = Path(self.path).absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create directory {parent} for the SQLite database {self.path}: "
                f"{exc.strerror or exc}; create it, or choose another path in the database URL"
            ) from exc
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"directory {parent} of the SQLite database {self.path} is not writable by "
                f"this user (SQLite keeps its -wal and -shm files beside the database): "
                "fix its permissions, or choose another path in the database URL"
            )

    def _connect_and_migrate(self, migrate: bool, create: bool) -> tuple[int, ...]:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as exc:
            raise map_error(exc, self.path) from exc
        conn.text_factory = text_value
        add_functions(conn)
        try:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as exc:
                raise map_error(exc, self.path) from exc
            self._conn = conn
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            self._claim_data_version = self._data_version
            if migrate and not create:
                self._require_schema(conn)
            return self._transaction(lambda c: apply_migrations(c, self.path)) if migrate else ()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _require_schema(self, conn: sqlite3.Connection) -> None:
        if not _has_migrations_table(conn):
            raise StoreNotFound(
                f"{self.path} is not a gladd store (it has no gladd_migrations table; nothing "
                "was created): `gladd db migrate` makes it one, or choose another path"
            )

    async def close(self) -> None:
        thread, self._thread, self._wakeup = self._thread, None, None
        if thread is None:
            return
        self._watchers.changed_all()  # a watcher finds the store closed when it reads
        if self._files is not None:
            self._files.stop()
        if self._doorbell is not None:
            self._doorbell.close()
        try:
            await thread.call(self._close_connection)
        finally:
            await thread.stop()

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def migration_status(self) -> MigrationStatus:
        def versions(conn: sqlite3.Connection) -> list[tuple[int]]:
            exists = _has_migrations_table(conn)
            return conn.execute(Q["migration_versions"]).fetchall() if exists else []

        done = tuple(sorted(v for (v,) in await self._read(versions)))
        known = tuple(v for v, _ in migrations())
        return MigrationStatus(
            current=max(done, default=0),
            latest=known[-1],
            applied=self._applied,
            known=known,
            done=done,
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _transaction(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """Run ``work`` in one BEGIN IMMEDIATE transaction (in the database thread);
        ``durable``: fsync the WAL at its commit (see the module docstring)."""
        conn = self._conn
        assert conn is not None
        if not durable:
            return self._committed(conn, work)
        try:
            conn.execute("PRAGMA synchronous = FULL")  # not allowed inside a transaction
            try:
                return self._committed(conn, work)
            finally:
                conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise map_error(exc, self.path) from exc

    def _committed(self, conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.rollback()
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise map_error(exc, self.path) from exc
        return result

    def _reading(self, work: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        try:
            return work(self._conn)
        except sqlite3.Error as exc:
            raise map_error(exc, self.path) from exc

    async def _write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        return await self._open_thread().call(lambda: self._transaction(work, durable=durable))

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._open_thread().call(lambda: self._reading(work))

    def _open_thread(self) -> DbThread:
        if self._thread is None:
            raise StoreError(f"{self.url}: the store is not open (call `await store.open()`)")
        return self._thread

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.notify()
        if self._doorbell is not None:
            self._doorbell.ring()  # the daemon, if this store is another process's

    # -- enqueue ----------------------------------------------------------------------------

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued:
        return (await self.enqueue_many([task], now=now))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask], *, now: datetime) -> list[Enqueued]:
        now = utc(now)
        rows = _new_rows(tasks, now)
        now_us = to_us(now)
        enqueued = await self._write(
            lambda c: [insert(c, row, now_us) for row in rows], durable=True
        )
        if any(e.created for e in enqueued):
            self._notify()
        return enqueued

    # -- schedules --------------------------------------------------------------------------

    async def schedule_states(self) -> dict[str, ScheduleState]:
        rows = await self._read(lambda c: c.execute(Q["schedule_states"]).fetchall())
        return {state.name: state for state in map(row_to_schedule, rows)}

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
            expected=None if expected is None else to_us(utc(expected, "expected")),
            to=to_us(utc(to, "to")),
            now=to_us(now),
        )
        rows = _new_rows(tasks, now)  # TaskRejected before the transaction
        enqueued = await self._write(lambda c: advance_schedule(c, advance, rows), durable=True)
        if enqueued and any(e.created for e in enqueued):
            self._notify()
        return enqueued

    async def forget_schedules(self, keep: Collection[str]) -> int:
        names = json.dumps(sorted(keep))
        return await self._write(lambda c: c.execute(Q["forget_schedules"], (names,)).rowcount)

    # -- the kinds catalogue ----------------------------------------------------------------

    async def publish_kinds(self, node: str, kinds: Sequence[KindSpec], *, now: datetime) -> None:
        rows = [
            (
                k.name,
                node,
                k.plugin,
                k.description,
                schema_text(k.payload_schema),
                json.dumps(list(k.services)),
                to_us(k.published_at),
            )
            for k in published(node, list(kinds), utc(now))
        ]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(Q["kinds_forget_node"], (node,))
            conn.executemany(Q["kinds_publish"], rows)

        await self._write(work)

    async def kinds_catalogue(self) -> list[PublishedKind]:
        rows = await self._read(lambda c: c.execute(Q["kinds_catalogue"]).fetchall())
        return [row_to_kind(row) for row in rows]

    # -- running ----------------------------------------------------------------------------

    async def claim(
        self, *, worker: str, limit: int, now: datetime, kinds: Sequence[str] | None = None
    ) -> list[Task]:
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        now_us = to_us(utc(now))
        params: dict[str, Any] = {
            "worker": worker,
            "now": now_us,
            "limit": limit,
            "at": utc(now).isoformat(),
        }
        if kinds is not None:
            params["kinds"] = json.dumps(list(kinds))

        def claim(conn: sqlite3.Connection) -> tuple[list[Task], bool]:
            conn.execute(Q["seen"], (worker, now_us))
            query = Q["claim"] if kinds is None else Q["claim_kinds"]
            rows = conn.execute(query, params).fetchall()
            return [row_to_task(r) for r in rows], self._written_elsewhere(conn)

        tasks, elsewhere = await self._write(claim)
        self._heard(elsewhere)
        tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))  # RETURNING has no order
        return tasks

    # -- flow control (sqlite/flow.py) ------------------------------------------------------

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
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        request = GatedRequest(
            worker=worker,
            limit=limit,
            now=utc(now),
            kinds=tuple(kinds),
            gates=tuple(gates),
            scan=scan,
            ended=tuple(ended),
        )

        def claim(conn: sqlite3.Connection) -> tuple[tuple[list[Task], ClaimPlan], bool]:
            return flow.claim_gated(conn, request), self._written_elsewhere(conn)

        (tasks, plan), elsewhere = await self._write(claim)
        self._heard(elsewhere)
        return GatedClaim(tasks=tasks, usage=plan.usage, held=plan.held, next_at=plan.next_at)

    async def limit_usage(self, gates: Sequence[Gate], *, now: datetime) -> LimitUsage:
        now = utc(now)
        return await self._read(lambda c: flow.limit_usage(c, gates, now))

    async def pauses(self, *, now: datetime) -> list[Pause]:
        now_us = to_us(utc(now))
        rows = await self._read(lambda c: c.execute(Q["pauses"], (now_us,)).fetchall())
        return [flow.row_to_pause(row) for row in rows]

    async def pause(self, pause: Pause) -> Pause:
        row = flow.pause_row(pause)
        await self._write(lambda c: c.execute(Q["pause"], row))
        self._pauses_changed()
        return flow.row_to_pause(row)

    async def resume(self, target: str, *, now: datetime) -> Pause | None:
        now = utc(now)
        rows = await self._write(lambda c: c.execute(Q["resume"], (target,)).fetchall())
        self._pauses_changed()
        removed = [flow.row_to_pause(row) for row in rows]
        return removed[0] if removed and removed[0].active(now) else None

    async def breaker_overrides(self) -> list[BreakerOverride]:
        rows = await self._read(lambda c: c.execute(Q["breaker_overrides"]).fetchall())
        return [_row_to_override(row) for row in rows]

    async def isolate_breaker(self, override: BreakerOverride) -> BreakerOverride:
        created = utc(override.created_at, "created_at")
        stored = BreakerOverride(name=override.name, by=override.by, created_at=created)
        row = (stored.name, stored.by, to_us(created))
        await self._write(lambda c: c.execute(Q["isolate_breaker"], row))
        self._pauses_changed()
        return stored

    async def reset_breaker(self, name: str) -> BreakerOverride | None:
        rows = await self._write(lambda c: c.execute(Q["reset_breaker"], (name,)).fetchall())
        self._pauses_changed()
        return _row_to_override(rows[0]) if rows else None

    def _written_elsewhere(self, conn: sqlite3.Connection) -> bool:
        """Whether another connection committed since the last claim looked (database
        thread). A busy daemon's store may not wait for work, and so not hear the doorbell,
        for long: its claims notice another process's pause this way (one pragma)."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._claim_data_version = version != self._claim_data_version, version
        return bool(changed)

    def _heard(self, elsewhere: bool) -> None:
        if elsewhere:
            self.pause_epoch += 1

    def _pauses_changed(self) -> None:
        """Our own pause or resume: this store's readers learn of it now, another process's
        store when its waiter hears the doorbell (:meth:`wait_for_work`)."""
        self.pause_epoch += 1
        self._notify()

    async def ring(self) -> None:
        self._open_thread()
        self._notify()

    async def sweep_limits(self, *, now: datetime, idle: float) -> int:
        now_us = to_us(utc(now))
        cutoff = now_us - round(idle * 1e6)

        def sweep(conn: sqlite3.Connection) -> int:
            pauses = conn.execute(Q["sweep_pauses"], (now_us,)).rowcount
            return pauses + conn.execute(Q["sweep_buckets"], (cutoff,)).rowcount

        return await self._write(sweep)

    # -- outcomes ---------------------------------------------------------------------------

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        now = utc(now)
        stamp = Stamp.of(now)
        writes = [outcome_write(o, stamp) for o in outcomes]

        def finish(conn: sqlite3.Connection) -> list[bool]:
            applied = [conn.execute(sql, params).rowcount == 1 for sql, params in writes]
            for outcome, ok in zip(outcomes, applied, strict=True):
                if not ok:
                    fenced(conn, outcome, now)
            return applied

        applied = await self._write(finish)
        self._watchers.changed(o.id for o, ok in zip(outcomes, applied, strict=True) if ok)
        if any(
            ok and isinstance(o, Released | Failed) for o, ok in zip(outcomes, applied, strict=True)
        ):
            self._notify()
        return applied

    async def record_progress(
        self, reports: Sequence[ProgressReport], *, now: datetime
    ) -> list[bool]:
        now_us = to_us(utc(now))
        params = [
            {"id": r.id, "token": r.token, "fraction": r.fraction, "message": r.message,
             "attempt": r.attempt, "now": now_us}
            for r in check_progress(reports)
        ]  # fmt: skip

        def record(conn: sqlite3.Connection) -> list[bool]:
            return [conn.execute(Q["progress"], p).rowcount == 1 for p in params]

        applied = await self._write(record) if params else []
        self._watchers.changed(r.id for r, ok in zip(reports, applied, strict=True) if ok)
        return applied

    @asynccontextmanager
    async def watch(self, task_id: int) -> AsyncIterator[TaskWatch]:
        self._open_thread()
        async with self._watchers.watch(task_id) as watch:
            if self._files is None:  # ":memory:": no other connection can change it
                yield watch
                return
            self._files.start()
            try:
                yield _Settling(watch)
            finally:
                if not self._watchers:
                    self._files.stop()

    async def heartbeat(
        self, *, worker: str, now: datetime, running: Sequence[tuple[int, int]]
    ) -> set[int]:
        now_us = to_us(utc(now))
        tokens = dict(running)
        ids = json.dumps(list(tokens))

        def heartbeat(conn: sqlite3.Connection) -> set[int]:
            conn.execute(Q["seen"], (worker, now_us))
            if not tokens:
                return set()
            rows = conn.execute(Q["cancel_requests"], (ids, worker))
            return {task_id for task_id, token in rows if tokens.get(task_id) == token}

        return await self._write(heartbeat)

    async def rescue(self, *, now: datetime, lease: float, max_rescues: int) -> RescueReport:
        now = utc(now)
        report = await self._write(lambda c: rescue_running(c, now, lease, max_rescues))
        if report.to_pending or report.to_dead or report.dead_workers:
            self._watchers.changed_all()  # rescued ones include cancelled, listed nowhere
        if report.to_pending:
            self._notify()
        return report

    async def forget_worker(self, worker: str) -> None:
        await self._write(lambda c: c.execute(Q["forget_worker"], (worker,)))

    # -- operators --------------------------------------------------------------------------

    async def get(self, task_id: int) -> Task | None:
        return await self._read(lambda c: _get_with_timeline(c, task_id))

    async def list(
        self,
        *,
        state: TaskState | None = None,
        kind: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Task]:
        params = {
            "state": None if state is None else str(state),
            "kind": kind,
            "before_id": before_id,
            "limit": limit,
        }
        return await self._read(lambda c: [row_to_task(r) for r in c.execute(Q["list"], params)])

    async def cancel(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        now = utc(now)
        params = {"id": task_id, "now": to_us(now), "at": now.isoformat(), "by": by}

        def cancel(conn: sqlite3.Connection) -> Task | None:
            rows = conn.execute(Q["cancel"], params).fetchall()
            return row_to_task(rows[0]) if rows else _get(conn, task_id)

        task = await self._write(cancel)
        self._watchers.changed((task_id,))
        return task

    async def retry(self, task_id: int, *, now: datetime, by: str | None = None) -> Task | None:
        now = utc(now)
        params = {
            "id": task_id,
            "now": to_us(now),
            "entries": tl.dumps([tl.entry(now, tl.RETRIED, by=by)]),
        }

        def retry(conn: sqlite3.Connection) -> Task | None:
            task = _get(conn, task_id)
            if task is None:
                return None
            if task.state not in (TaskState.DEAD, TaskState.CANCELLED):
                return task
            if task.unique_key is not None:
                other = conn.execute(Q["unfinished_id_by_key"], (task.unique_key,)).fetchone()
                if other is not None:
                    raise unique_conflict(task_id, task.unique_key, other[0])
            updated = conn.execute(Q["retry"], params).fetchone()
            return row_to_task(updated)

        task = await self._write(retry)
        if task is not None and task.state is TaskState.PENDING:
            self._watchers.changed((task_id,))
            self._notify()
        return task

    async def purge(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        params = _purge_params(finished_before, states)
        return await self._write(lambda c: c.execute(Q["purge"], params).rowcount)

    async def count_purgeable(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        params = _purge_params(finished_before, states)
        return int(
            await self._read(lambda c: c.execute(Q["count_purgeable"], params).fetchone()[0])
        )

    async def counts(self) -> dict[TaskState, int]:
        return (await self.stats()).totals

    async def stats(self) -> TaskStats:
        return await self._read(listing.stats)

    async def find(self, where: TaskFilter, *, limit: int, before: int | None = None) -> TaskPage:
        return await self._read(lambda c: listing.find(c, where, limit, before))

    async def count_matching(self, where: TaskFilter) -> int:
        return await self._read(lambda c: listing.count_matching(c, where))

    async def workers(self) -> builtins.list[WorkerInfo]:
        return await self._read(listing.workers)

    async def wait_for_work(self, timeout: float) -> bool:
        thread, wakeup = self._open_thread(), self._wakeup
        assert wakeup is not None
        if self.path == ":memory:":  # no other connection can reach it
            return await wakeup.wait(timeout)

        wal = f"{self.path}-wal"
        seen = _file_signature(wal)

        soonest, latest = EXTERNAL_CHECK

        async def look_for_other_writers() -> None:
            nonlocal seen
            while True:
                idle = anyio.current_time() - self._work_seen
                await anyio.sleep(min(max(idle / 10, soonest), latest))
                if self._thread is not thread:  # closed meanwhile
                    return
                # Every commit, ours or not, touches the WAL file: ask SQLite whose it was
                # only then, so an idle check is one stat() and no trip to the thread.
                signature = _file_signature(wal)
                if signature == seen:
                    continue
                seen = signature
                if await thread.call(self._committed_elsewhere):
                    self.pause_epoch += 1  # a writer that cannot ring may have paused
                    wakeup.notify()
                    return

        async def answer_the_door(doorbell: Doorbell) -> None:
            await doorbell.wait()
            # Any ring may be another process's pause or resume: re-reading them is cheap.
            self.pause_epoch += 1
            wakeup.notify()

        # One waiter listens at the door for all: the wake-up it passes on reaches each.
        doorbell = self._doorbell
        answering = doorbell is not None and not self._answering and doorbell.listen()
        self._answering |= answering
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(look_for_other_writers)
                if answering:
                    assert doorbell is not None
                    tg.start_soon(answer_the_door, doorbell)
                woken = await wakeup.wait(timeout)
                tg.cancel_scope.cancel()
        finally:
            if answering:
                self._answering = False
        if woken:
            self._work_seen = anyio.current_time()
        return woken

    def _committed_elsewhere(self) -> bool:
        """Whether another connection committed since the last look (database thread)."""
        if self._conn is None:
            return False
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._data_version = version != self._data_version, version
        return bool(changed)

    def prepare_retune(self, database: DatabasePolicy) -> Callable[[], None]:
        return nothing_to_retune  # busy_timeout is not a [database] field

    def pool_stats(self) -> PoolStats:
        # One connection on one thread, not a pool: statements queue for the thread instead.
        thread = self._thread
        calls = thread.in_flight if thread is not None else 0
        return PoolStats(
            backend="sqlite",
            pooled=False,
            open=thread is not None,
            size=int(thread is not None),
            idle=int(thread is not None and not calls),
            in_use=min(calls, 1),
            max_size=1,
            waiting=max(0, calls - 1),
        )


class _Settling:
    """A watch whose first wait ends after :data:`~gladd.store.sqlite.files.SETTLE` at the
    latest: whatever was committed while inotify was being set up is read then."""

    __slots__ = ("_settled", "_watch")

    def __init__(self, watch: TaskWatch) -> None:
        self._watch = watch
        self._settled = False

    async def changed(self, timeout: float) -> bool:
        if not self._settled:
            self._settled = True
            if timeout > SETTLE:
                await self._watch.changed(SETTLE)
                return True
        return await self._watch.changed(timeout)


def _row_to_override(row: sqlite3.Row | tuple[Any, ...]) -> BreakerOverride:
    name, state, by, created_at = row
    created = from_us(created_at)
    assert created is not None
    return BreakerOverride(name=name, state=state, by=by, created_at=created)
