# ruff: noqa: S608 - SQL text is built from this module's constants; values are parameters
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
releases, rescues) made through this store object. While it waits it also looks at the WAL
file now and then (``EXTERNAL_CHECK``: 50 ms soon after work, up to 500 ms when long idle;
one stat() each); when the file changed it asks SQLite whether another connection
committed (``PRAGMA data_version``, which this connection's own commits never change). So
tasks enqueued by the CLI or another process start within 50 to 500 ms, and an idle daemon
makes no trip to the database thread.

The semantics shared with every store (what is refused, cancel wins over pending, rescue
verdicts) live in :mod:`gladd.store.memory`, the reference implementation.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from gladd.errors import StoreError, StoreUnavailable
from gladd.store.base import (
    Cancelled,
    Enqueued,
    Failed,
    MigrationStatus,
    NewTask,
    Outcome,
    PoolStats,
    Released,
    RescueReport,
    Succeeded,
    Task,
    TaskError,
    TaskState,
)
from gladd.store.rules import (
    RESCUED,
    Wakeup,
    check_new_task,
    dump_json,
    rescue_reason,
    rescue_verdict,
    unique_conflict,
    utc,
)

__all__ = ["SQLiteStore"]

T = TypeVar("T")
MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING
EXTERNAL_CHECK = (0.05, 0.5)
"""Seconds between looks for other processes' commits while waiting: the first soon after
work was last seen, growing (a tenth of the idle time so far) to the second, so a long-idle
daemon wakes twice a second and one fed by another process finds its tasks in ~50 ms."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

COLUMNS = (
    "id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key, "
    "owner, token, rescues, deadline, cancel_requested, result, errors, created_at, "
    "updated_at, finished_at"
)
_INSERT = (
    "INSERT INTO gladd_tasks (kind, payload, priority, run_at, max_attempts, timeout, "
    "unique_key, result, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'null', ?, ?)"
)
_BY_KEY = (
    f"SELECT {COLUMNS} FROM gladd_tasks WHERE unique_key = ? AND state IN ('pending', 'running')"
)
_SEEN = (
    "INSERT INTO gladd_workers (id, last_seen) VALUES (?, ?) "
    "ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
)
_CLAIM = f"""
UPDATE gladd_tasks SET
    state = 'running', owner = :worker, attempt = attempt + 1, token = token + 1,
    deadline = :now + CAST(round(timeout * 1000000) AS INTEGER), updated_at = :now
WHERE id IN (
    SELECT id FROM gladd_tasks
    WHERE state = 'pending' AND run_at <= :now {{kinds}}
    ORDER BY priority DESC, run_at, id LIMIT :limit
)
RETURNING {COLUMNS}
"""
CLAIM_ANY = _CLAIM.format(kinds="")
CLAIM_KINDS = _CLAIM.format(kinds="AND kind IN (SELECT value FROM json_each(:kinds))")

# Outcomes. Each applies only while the task is running under the token named; a task whose
# cancellation was requested finishes cancelled instead of going back to pending.
_FENCE = "WHERE id = :id AND token = :token AND state = 'running'"
_OFF_DUTY = "owner = NULL, deadline = NULL, updated_at = :now"
_APPEND_ERROR = "errors = json_insert(errors, '$[#]', json(:error))"
_TO_PENDING = """
    state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    run_at = CASE WHEN cancel_requested THEN run_at ELSE :run_at END,
    finished_at = CASE WHEN cancel_requested THEN :now END"""
SUCCEED = f"UPDATE gladd_tasks SET state = 'succeeded', result = :result, finished_at = :now, {_OFF_DUTY} {_FENCE}"  # noqa: E501
FAIL_DEAD = f"UPDATE gladd_tasks SET state = 'dead', finished_at = :now, {_APPEND_ERROR}, {_OFF_DUTY} {_FENCE}"  # noqa: E501
FAIL_RETRY = f"UPDATE gladd_tasks SET {_TO_PENDING}, {_APPEND_ERROR}, {_OFF_DUTY} {_FENCE}"
RELEASE = (
    f"UPDATE gladd_tasks SET {_TO_PENDING}, "
    f"attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt - 1 END, {_OFF_DUTY} {_FENCE}"
)
CANCELLED = f"UPDATE gladd_tasks SET state = 'cancelled', finished_at = :now, {_OFF_DUTY} {_FENCE}"
RESCUE = (
    "UPDATE gladd_tasks SET state = :state, run_at = :run_at, owner = NULL, deadline = NULL, "
    f"token = token + 1, rescues = rescues + 1, {_APPEND_ERROR}, updated_at = :now, "
    "finished_at = :finished_at WHERE id = :id"
)
RETRY = (
    "UPDATE gladd_tasks SET state = 'pending', run_at = :now, attempt = 0, rescues = 0, "
    "owner = NULL, deadline = NULL, cancel_requested = 0, result = 'null', finished_at = NULL, "
    f"updated_at = :now WHERE id = :id RETURNING {COLUMNS}"
)


# -- conversions ----------------------------------------------------------------------------


def to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def from_us(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _error_json(error: TaskError) -> str:
    record = {
        "type": error.type,
        "message": error.message,
        "attempt": error.attempt,
        "at": to_us(utc(error.at, "error.at")),
    }
    return json.dumps(record, separators=(",", ":"))


def _errors(text: str) -> tuple[TaskError, ...]:
    if text == "[]":
        return ()
    return tuple(
        TaskError(
            type=e["type"],
            message=e["message"],
            attempt=e["attempt"],
            at=_EPOCH + timedelta(microseconds=e["at"]),
        )
        for e in json.loads(text)
    )


def row_to_task(row: sqlite3.Row | tuple[Any, ...]) -> Task:
    (id_, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key,
     owner, token, rescues, deadline, cancel_requested, result, errors, created_at,
     updated_at, finished_at) = row  # fmt: skip
    return Task(
        id=id_,
        kind=kind,
        payload=json.loads(payload),
        state=TaskState(state),
        priority=priority,
        run_at=_EPOCH + timedelta(microseconds=run_at),
        attempt=attempt,
        max_attempts=max_attempts,
        timeout=timeout,
        unique_key=unique_key,
        owner=owner,
        token=token,
        rescues=rescues,
        deadline=from_us(deadline),
        cancel_requested=bool(cancel_requested),
        result=None if result is None else json.loads(result),
        errors=_errors(errors),
        created_at=_EPOCH + timedelta(microseconds=created_at),
        updated_at=_EPOCH + timedelta(microseconds=updated_at),
        finished_at=from_us(finished_at),
    )


# -- migrations -----------------------------------------------------------------------------

_MIGRATION_FILE = re.compile(r"^(\d{4})_\w+\.sql$")


@cache
def migrations() -> tuple[tuple[int, str], ...]:
    """(version, SQL text) of every migration this code knows, in order."""
    folder = files("gladd.store").joinpath("sql", "sqlite")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match[1]), entry.read_text(encoding="utf-8")))
    return tuple(sorted(found))


def statements(script: str) -> Iterator[str]:
    """The statements of a SQL script, for running them inside our own transaction
    (``executescript`` would commit it)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    leftover = [ln for ln in pending.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if leftover:
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending!r}")


def _migrate(conn: sqlite3.Connection, path: str) -> tuple[int, ...]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS gladd_migrations "
        "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    done = {v for (v,) in conn.execute("SELECT version FROM gladd_migrations")}
    known = migrations()
    latest = known[-1][0]
    if done and max(done) > latest:
        raise StoreError(
            f"SQLite database {path} has schema version {max(done)}, but this gladd knows "
            f"versions up to {latest} only: upgrade gladd, or point it at another database"
        )
    applied = []
    for version, script in known:
        if version in done:
            continue
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO gladd_migrations (version, applied_at) VALUES (?, ?)",
            (version, to_us(datetime.now(UTC))),
        )
        applied.append(version)
    return tuple(applied)


def _file_signature(path: str) -> tuple[int, int] | None:
    """(mtime ns, size) of a file, None if absent: one local stat(), cheap enough for the loop."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


# -- the database thread --------------------------------------------------------------------


class _DbThread:
    """One thread that runs callables in order; ``call`` awaits one without blocking.

    The wait is shielded: a cancelled caller still waits for the statement it started
    (a transaction is never abandoned half-way), then sees the cancellation.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.in_flight = 0  # calls running or queued (read by pool_stats)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def call(self, fn: Callable[[], T]) -> T:
        self.in_flight += 1
        try:
            return await self._call(fn)
        finally:
            self.in_flight -= 1

    async def _call(self, fn: Callable[[], T]) -> T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return await self._call_any_backend(fn)
        # asyncio: hand the result over with call_soon_threadsafe, about twice as fast.
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        self._jobs.put(job)
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    async def _call_any_backend(self, fn: Callable[[], T]) -> T:
        token = anyio.lowlevel.current_token()
        done = anyio.Event()
        box: list[tuple[bool, Any]] = []

        def job() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            anyio.from_thread.run_sync(done.set, token=token)

        self._jobs.put(job)
        with anyio.CancelScope(shield=True):
            await done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def stop(self) -> None:
        self._jobs.put(None)
        await anyio.to_thread.run_sync(self._thread.join)


def _settle(future: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _store_error(exc: sqlite3.Error, path: str) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreUnavailable(
            f"SQLite database {path} stayed locked by another connection past the busy "
            f"timeout: {exc}"
        )
    if code == sqlite3.SQLITE_NOTADB:
        return StoreError(f"{path} is not a SQLite database (or is encrypted): {exc}")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return StoreError(
            f"SQLite database {path} cannot be written: {exc}; check the file's and its "
            "directory's permissions"
        )
    return StoreError(f"SQLite database {path}: {exc}")


# -- the store ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    """An enqueue, checked and converted in the event loop before the write."""

    new: NewTask
    payload: str
    run_at: int


class SQLiteStore:
    """Tasks in one SQLite file (``":memory:"`` works too, for one store object)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._thread: _DbThread | None = None
        self._wakeup: Wakeup | None = None
        self._applied: tuple[int, ...] = ()
        self._data_version = 0  # PRAGMA data_version last seen, in the database thread
        self._work_seen = 0.0  # anyio.current_time() when wait_for_work last found work

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        if self._thread is not None:
            return
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old for gladd: it needs 3.35 or later"
            )
        if self.path != ":memory:":
            self._prepare_path(create=migrate)
        thread = _DbThread(f"gladd-sqlite:{Path(self.path).name}")
        try:
            self._applied = await thread.call(lambda: self._connect_and_migrate(migrate))
        except BaseException:
            await thread.stop()
            raise
        self._thread = thread
        self._wakeup = Wakeup()
        self._work_seen = anyio.current_time()

    def _prepare_path(self, *, create: bool) -> None:
        if not create and not Path(self.path).exists():
            raise StoreError(
                f"there is no SQLite database at {self.path} yet: `gladd db migrate` "
                "or `gladd run` creates it"
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

    def _connect_and_migrate(self, migrate: bool) -> tuple[int, ...]:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        try:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path) from exc
            self._conn = conn
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            return self._transaction(lambda c: _migrate(c, self.path)) if migrate else ()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    async def close(self) -> None:
        thread, self._thread, self._wakeup = self._thread, None, None
        if thread is None:
            return
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
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gladd_migrations'"
            ).fetchone()
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
            raise _store_error(exc, self.path) from exc
        return result

    def _reading(self, work: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        try:
            return work(self._conn)
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._open_thread().call(lambda: self._transaction(work))

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._open_thread().call(lambda: self._reading(work))

    def _open_thread(self) -> _DbThread:
        if self._thread is None:
            raise StoreError(f"{self.url}: the store is not open (call `await store.open()`)")
        return self._thread

    def _notify(self) -> None:
        if self._wakeup is not None:
            self._wakeup.notify()

    # -- enqueue ----------------------------------------------------------------------------

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued:
        return (await self.enqueue_many([task], now=now))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask], *, now: datetime) -> list[Enqueued]:
        now = utc(now)
        rows = []
        for task in tasks:
            payload, run_at = check_new_task(task, now=now)
            rows.append(_Row(new=task, payload=payload, run_at=to_us(run_at)))
        now_us = to_us(now)
        enqueued = await self._write(lambda c: [_insert(c, row, now_us) for row in rows])
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
            conn.execute(_SEEN, (worker, now_us))
            rows = conn.execute(CLAIM_ANY if kinds is None else CLAIM_KINDS, params).fetchall()
            return [row_to_task(r) for r in rows]

        tasks = await self._write(claim)
        tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))  # RETURNING has no order
        return tasks

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        now_us = to_us(utc(now))
        writes = [_outcome_write(o, now_us) for o in outcomes]

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
            conn.execute(_SEEN, (worker, now_us))
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
        report = await self._write(lambda c: _rescue(c, now, lease, max_rescues))
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
                other = conn.execute(_BY_KEY, (task.unique_key,)).fetchone()
                if other is not None:
                    raise unique_conflict(task_id, task.unique_key, other[0])
            updated = conn.execute(RETRY, {"id": task_id, "now": now_us}).fetchone()
            return row_to_task(updated)

        task = await self._write(retry)
        if task is not None and task.state is TaskState.PENDING:
            self._notify()
        return task

    async def purge(self, *, finished_before: datetime) -> int:
        before = to_us(utc(finished_before, "finished_before"))
        return await self._write(
            lambda c: (
                c.execute(
                    "DELETE FROM gladd_tasks WHERE finished_at < ? "
                    "AND state IN ('succeeded', 'dead', 'cancelled')",
                    (before,),
                ).rowcount
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

        async with anyio.create_task_group() as tg:
            tg.start_soon(look_for_other_writers)
            woken = await wakeup.wait(timeout)
            tg.cancel_scope.cancel()
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


# -- writes, run in the database thread -----------------------------------------------------


def _insert(conn: sqlite3.Connection, row: _Row, now: int) -> Enqueued:
    new = row.new
    if new.unique_key is not None:
        existing = conn.execute(_BY_KEY, (new.unique_key,)).fetchone()
        if existing is not None:
            return Enqueued(task=row_to_task(existing), created=False)
    cursor = conn.execute(
        _INSERT,
        (new.kind, row.payload, new.priority, row.run_at, new.max_attempts, new.timeout,
         new.unique_key, now, now),
    )  # fmt: skip
    assert cursor.lastrowid is not None
    created = from_us(now)
    assert created is not None
    task = Task(
        id=cursor.lastrowid,
        kind=new.kind,
        payload=json.loads(row.payload),
        state=TaskState.PENDING,
        priority=new.priority,
        run_at=_EPOCH + timedelta(microseconds=row.run_at),
        attempt=0,
        max_attempts=new.max_attempts,
        timeout=new.timeout,
        unique_key=new.unique_key,
        owner=None,
        token=0,
        rescues=0,
        deadline=None,
        cancel_requested=False,
        result=None,
        errors=(),
        created_at=created,
        updated_at=created,
        finished_at=None,
    )
    return Enqueued(task=task, created=True)


def _outcome_write(outcome: Outcome, now: int) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"id": outcome.id, "token": outcome.token, "now": now}
    match outcome:
        case Succeeded(result=result):
            params["result"] = dump_json(result, f"result of task {outcome.id}")
            return SUCCEED, params
        case Failed(error=error, retry_at=retry_at):
            params["error"] = _error_json(error)
            if retry_at is None:
                return FAIL_DEAD, params
            params["run_at"] = to_us(utc(retry_at, "retry_at"))
            return FAIL_RETRY, params
        case Released(run_at=run_at):
            params["run_at"] = to_us(utc(run_at, "run_at"))
            return RELEASE, params
        case Cancelled():
            return CANCELLED, params
    raise TypeError(f"not a task outcome: {outcome!r}")


def _rescue(
    conn: sqlite3.Connection, now: datetime, lease: float, max_rescues: int
) -> RescueReport:
    now_us = to_us(now)
    cutoff = now_us - round(lease * 1e6)
    seen = dict(conn.execute("SELECT id, last_seen FROM gladd_workers").fetchall())
    dead = {w for w, last in seen.items() if last <= cutoff}
    lost = set(dead)
    to_pending: list[int] = []
    to_dead: list[int] = []
    for row in conn.execute(
        f"SELECT {COLUMNS} FROM gladd_tasks WHERE state = 'running'"
    ).fetchall():
        task = row_to_task(row)
        live = task.owner in seen and task.owner not in dead
        if live and (task.deadline is None or task.deadline >= now):
            continue
        if not live and task.owner is not None:
            lost.add(task.owner)
        state = rescue_verdict(task, max_rescues=max_rescues, live=live)
        error = TaskError(
            type=RESCUED,
            message=rescue_reason(task, now=now, live=live),
            attempt=task.attempt,
            at=now,
        )
        pending = state is TaskState.PENDING
        conn.execute(
            RESCUE,
            {
                "id": task.id,
                "state": str(state),
                "run_at": now_us if pending else to_us(task.run_at),
                "error": _error_json(error),
                "now": now_us,
                "finished_at": None if pending else now_us,
            },
        )
        if pending:
            to_pending.append(task.id)
        elif state is TaskState.DEAD:
            to_dead.append(task.id)
    conn.execute("DELETE FROM gladd_workers WHERE last_seen <= ?", (cutoff,))
    return RescueReport(
        to_pending=tuple(sorted(to_pending)),
        to_dead=tuple(sorted(to_dead)),
        dead_workers=tuple(sorted(lost)),
    )
