# ruff: noqa: S608 - SQL text is built from constants (COLUMNS); values are parameters
"""The embedded default store: one SQLite file, zero set-up.

Concurrency: one connection, used from one dedicated thread that runs every statement (a
queue feeds it; the event loop never blocks on SQLite). Every write is one ``BEGIN
IMMEDIATE`` transaction, so a claim, a batch of outcomes or a batch of enqueues is atomic,
and several processes on one file serialise on SQLite's write lock (WAL mode,
``synchronous=NORMAL``, ``busy_timeout``). A waiter for the lock longer than the busy timeout
gets :class:`~gladd.errors.StoreUnavailable`.

Storage: times are INTEGER microseconds since the Unix epoch (UTC), JSON is TEXT. The schema
is versioned by ``sql/sqlite/NNNN_name.sql`` files, applied at :meth:`SQLiteStore.open` in one
transaction and recorded in ``gladd_migrations``; a file migrated by a newer gladd is refused.

Wake-ups: :meth:`SQLiteStore.wait_for_work` is woken at once by enqueues (and retries,
releases, rescues) made through this store object, and by those of stores in other
processes (the CLI, ``gladd.enqueue``), which ring the waiting store's doorbell
(:mod:`~gladd.store.sqlite_doorbell`) after they commit. For writers that cannot ring
(plain SQL, a second daemon) it also looks at the WAL file now and then
(``EXTERNAL_CHECK``: 50 ms soon after work, up to 500 ms when long idle; one stat() each);
when the file changed it asks SQLite whether another connection committed (``PRAGMA
data_version``, which this connection's own commits never change).

The semantics shared with every store (what is refused, cancel wins over pending, rescue
verdicts) live in :mod:`gladd.store.rules`; the contract suite holds every store to them.
The parts of this store: :mod:`~gladd.store.sqlite_thread` (the database thread),
:mod:`~gladd.store.sqlite_writes` (the statements that change rows),
:mod:`~gladd.store.sqlite_rows` (values in and out of rows),
:mod:`~gladd.store.sqlite_schema` (migrations) and :mod:`~gladd.store.sqlite_errors` (the
StoreError for a driver error).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio

from gladd.errors import StoreError, StoreNotFound
from gladd.store.base import (
    FINISHED_STATES,
    Enqueued,
    Failed,
    MigrationStatus,
    NewTask,
    Outcome,
    PoolStats,
    Released,
    RescueReport,
    Task,
    TaskState,
)
from gladd.store.rules import Wakeup, check_new_task, purge_states, unique_conflict, utc
from gladd.store.sqlite_doorbell import Doorbell
from gladd.store.sqlite_errors import map_error
from gladd.store.sqlite_rows import COLUMNS, row_to_task, text_value, to_us
from gladd.store.sqlite_schema import apply_migrations, migrations
from gladd.store.sqlite_thread import DbThread
from gladd.store.sqlite_writes import (
    BY_KEY,
    CLAIM_ANY,
    CLAIM_KINDS,
    RETRY,
    SEEN,
    NewRow,
    insert,
    outcome_write,
    rescue_running,
)

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
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gladd_migrations'"
    ).fetchone()
    return found is not None


def _purge_where(
    finished_before: datetime, states: Collection[TaskState]
) -> tuple[str, tuple[object, ...]]:
    names = purge_states(states)
    marks = ", ".join("?" * len(names)) or "NULL"
    return (
        f"finished_at < ? AND state IN ({marks})",
        (to_us(utc(finished_before, "finished_before")), *names),
    )


# -- the store ------------------------------------------------------------------------------


class SQLiteStore:
    """Tasks in one SQLite file (``":memory:"`` works too, for one store object)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._thread: DbThread | None = None
        self._wakeup: Wakeup | None = None
        self._applied: tuple[int, ...] = ()
        self._data_version = 0  # PRAGMA data_version last seen, in the database thread
        self._work_seen = 0.0  # anyio.current_time() when wait_for_work last found work
        self._doorbell = Doorbell(self.path) if self.path != ":memory:" else None
        self._answering = False  # a waiter is listening for the doorbell

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
        try:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as exc:
                raise map_error(exc, self.path) from exc
            self._conn = conn
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
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
            return conn.execute("SELECT version FROM gladd_migrations").fetchall() if exists else []

        rows = await self._read(versions)
        return MigrationStatus(
            current=max((v for (v,) in rows), default=0),
            latest=migrations()[-1][0],
            applied=self._applied,
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one BEGIN IMMEDIATE transaction (in the database thread)."""
        conn = self._conn
        assert conn is not None
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

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._open_thread().call(lambda: self._transaction(work))

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
        rows = []
        for task in tasks:
            payload, run_at = check_new_task(task, now=now)
            rows.append(NewRow(new=task, payload=payload, run_at=to_us(run_at)))
        now_us = to_us(now)
        enqueued = await self._write(lambda c: [insert(c, row, now_us) for row in rows])
        if any(e.created for e in enqueued):
            self._notify()
        return enqueued

    # -- running ----------------------------------------------------------------------------

    async def claim(
        self, *, worker: str, limit: int, now: datetime, kinds: Sequence[str] | None = None
    ) -> list[Task]:
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        now_us = to_us(utc(now))
        params: dict[str, Any] = {"worker": worker, "now": now_us, "limit": limit}
        if kinds is not None:
            params["kinds"] = json.dumps(list(kinds))

        def claim(conn: sqlite3.Connection) -> list[Task]:
            conn.execute(SEEN, (worker, now_us))
            rows = conn.execute(CLAIM_ANY if kinds is None else CLAIM_KINDS, params).fetchall()
            return [row_to_task(r) for r in rows]

        tasks = await self._write(claim)
        tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))  # RETURNING has no order
        return tasks

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        now_us = to_us(utc(now))
        writes = [outcome_write(o, now_us) for o in outcomes]

        def finish(conn: sqlite3.Connection) -> list[bool]:
            return [conn.execute(sql, params).rowcount == 1 for sql, params in writes]

        applied = await self._write(finish)
        if any(
            ok and isinstance(o, Released | Failed) for o, ok in zip(outcomes, applied, strict=True)
        ):
            self._notify()
        return applied

    async def heartbeat(
        self, *, worker: str, now: datetime, running: Sequence[tuple[int, int]]
    ) -> set[int]:
        now_us = to_us(utc(now))
        tokens = dict(running)
        ids = json.dumps(list(tokens))

        def heartbeat(conn: sqlite3.Connection) -> set[int]:
            conn.execute(SEEN, (worker, now_us))
            if not tokens:
                return set()
            rows = conn.execute(
                "SELECT id, token FROM gladd_tasks WHERE id IN (SELECT value FROM json_each(?)) "
                "AND state = 'running' AND owner = ? AND cancel_requested",
                (ids, worker),
            )
            return {task_id for task_id, token in rows if tokens.get(task_id) == token}

        return await self._write(heartbeat)

    async def rescue(self, *, now: datetime, lease: float, max_rescues: int) -> RescueReport:
        now = utc(now)
        report = await self._write(lambda c: rescue_running(c, now, lease, max_rescues))
        if report.to_pending:
            self._notify()
        return report

    async def forget_worker(self, worker: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM gladd_workers WHERE id = ?", (worker,)))

    # -- operators --------------------------------------------------------------------------

    async def get(self, task_id: int) -> Task | None:
        def get(conn: sqlite3.Connection) -> Task | None:
            row = conn.execute(f"SELECT {COLUMNS} FROM gladd_tasks WHERE id = ?", (task_id,))
            found = row.fetchone()
            return None if found is None else row_to_task(found)

        return await self._read(get)

    async def list(
        self,
        *,
        state: TaskState | None = None,
        kind: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Task]:
        where, params = ["1"], list[Any]()
        for clause, value in (("state = ?", state), ("kind = ?", kind), ("id < ?", before_id)):
            if value is not None:
                where.append(clause)
                params.append(str(value) if isinstance(value, TaskState) else value)
        sql = (
            f"SELECT {COLUMNS} FROM gladd_tasks WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT ?"
        )
        return await self._read(
            lambda c: [row_to_task(r) for r in c.execute(sql, (*params, limit))]
        )

    async def cancel(self, task_id: int, *, now: datetime) -> Task | None:
        now_us = to_us(utc(now))

        def cancel(conn: sqlite3.Connection) -> Task | None:
            rows = conn.execute(
                "UPDATE gladd_tasks SET "
                "state = CASE state WHEN 'pending' THEN 'cancelled' ELSE state END, "
                "finished_at = CASE state WHEN 'pending' THEN :now ELSE finished_at END, "
                "cancel_requested = cancel_requested OR state = 'running', updated_at = :now "
                "WHERE id = :id AND (state = 'pending' OR (state = 'running' AND NOT "
                f"cancel_requested)) RETURNING {COLUMNS}",
                {"id": task_id, "now": now_us},
            ).fetchall()
            if rows:
                return row_to_task(rows[0])
            found = conn.execute(f"SELECT {COLUMNS} FROM gladd_tasks WHERE id = ?", (task_id,))
            row = found.fetchone()
            return None if row is None else row_to_task(row)

        return await self._write(cancel)

    async def retry(self, task_id: int, *, now: datetime) -> Task | None:
        now_us = to_us(utc(now))

        def retry(conn: sqlite3.Connection) -> Task | None:
            row = conn.execute(f"SELECT {COLUMNS} FROM gladd_tasks WHERE id = ?", (task_id,))
            found = row.fetchone()
            if found is None:
                return None
            task = row_to_task(found)
            if task.state not in (TaskState.DEAD, TaskState.CANCELLED):
                return task
            if task.unique_key is not None:
                other = conn.execute(BY_KEY, (task.unique_key,)).fetchone()
                if other is not None:
                    raise unique_conflict(task_id, task.unique_key, other[0])
            updated = conn.execute(RETRY, {"id": task_id, "now": now_us}).fetchone()
            return row_to_task(updated)

        task = await self._write(retry)
        if task is not None and task.state is TaskState.PENDING:
            self._notify()
        return task

    async def purge(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        where, args = _purge_where(finished_before, states)
        return await self._write(
            lambda c: c.execute(f"DELETE FROM gladd_tasks WHERE {where}", args).rowcount
        )

    async def count_purgeable(
        self, *, finished_before: datetime, states: Collection[TaskState] = FINISHED_STATES
    ) -> int:
        where, args = _purge_where(finished_before, states)
        return int(
            await self._read(
                lambda c: c.execute(
                    f"SELECT count(*) FROM gladd_tasks WHERE {where}", args
                ).fetchone()[0]
            )
        )

    async def counts(self) -> dict[TaskState, int]:
        rows = await self._read(
            lambda c: c.execute("SELECT state, count(*) FROM gladd_tasks GROUP BY state").fetchall()
        )
        counts = dict.fromkeys(TaskState, 0)
        counts.update((TaskState(state), n) for state, n in rows)
        return counts

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
                    wakeup.notify()
                    return

        async def answer_the_door(doorbell: Doorbell) -> None:
            await doorbell.wait()
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
