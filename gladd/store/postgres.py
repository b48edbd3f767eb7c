"""The PostgreSQL task store (asyncpg): many nodes share one database.

Queries live in ``sql/postgres/queries.sql`` (named, constant text: asyncpg prepares each
once per connection and reuses it) and the schema in ``sql/postgres/NNNN_*.sql``, applied
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
  the outcome was stored by the first attempt, under the same token).
- ``claim``: a claim whose commit outcome is unknown (timeout or connection lost after the
  statement went out) is never blindly repeated. Each claim carries a random ``claim_id``;
  a repeat first asks for the tasks taken under it and returns those if the first attempt
  committed. Should even that fail, the tasks stay running under this worker and are
  rescued at their deadline or once the worker is presumed dead: at-least-once still holds.
- ``enqueue``: a repeat after an unknown outcome may store a task twice (at-least-once);
  tasks with a ``unique_key`` cannot be duplicated.

Wake-ups: an insert into ``gladd_tasks`` (by gladd or plain SQL) notifies the channel
``gladd_tasks`` through a statement trigger; a dedicated listening connection outside the
pool turns it into :meth:`PostgresStore.wait_for_work` returning True. When that connection
drops, it is re-established in the background and waits are plain timed polls meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from importlib.resources import files
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import asyncpg  # type: ignore[import-untyped]
from loguru import logger

from gladd.errors import ResilienceTimeout, StoreError, StoreUnavailable, TaskRejected
from gladd.observe.acquire import AcquireMeter
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

T = TypeVar("T")

CHANNEL = "gladd_tasks"
MIGRATION_LOCK = 0x676C61646401  # "glad" "d" 1: pg_advisory_xact_lock key of migrations
PURGE_BATCH = 10_000
LISTENER_RETRY = 1.0  # seconds between attempts to re-establish the listening connection
MIGRATION_TIMEOUT = 60.0  # a node may wait this long for another's migration (the lock)

_SQL_DIR = files("gladd.store").joinpath("sql", "postgres")


class Guard(Protocol):
    """Wraps one store operation, e.g. the resilience engine's retry under the db policy."""

    def __call__(self, call: Callable[[], Awaitable[T]], /) -> Awaitable[T]: ...


def _load_queries() -> dict[str, str]:
    text = _SQL_DIR.joinpath("queries.sql").read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = chunk.partition("\n")
        queries[name.strip()] = body.strip().rstrip(";")
    return queries


def _load_migrations() -> tuple[tuple[int, str], ...]:
    found = []
    for entry in _SQL_DIR.iterdir():
        head = entry.name.split("_", 1)[0]
        if entry.name.endswith(".sql") and head.isdigit():
            found.append((int(head), entry.read_text(encoding="utf-8")))
    return tuple(sorted(found))


Q = _load_queries()
MIGRATIONS = _load_migrations()
LATEST = MIGRATIONS[-1][0]


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe to log and to show."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class PostgresStore:
    """The :class:`~gladd.store.base.Store` on PostgreSQL; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        query_timeout: float = 5.0,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        guard: Guard | None = None,
    ) -> None:
        if query_timeout <= 0:
            raise ValueError(f"query_timeout must be longer than 0s (got {query_timeout})")
        self._dsn = url
        self.url = mask_url(url)
        self._timeout = query_timeout
        self._min = pool_min_size
        self._max = pool_max_size
        self._guard = guard
        self._pool: Any = None
        self._applied: tuple[int, ...] = ()
        self._listener: Any = None
        self._reconnect: asyncio.Task[None] | None = None
        self._wakeup = Wakeup()
        self._closed = False
        self._acquires = AcquireMeter()

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        if self._pool is not None:
            return
        self._closed = False
        self._wakeup = Wakeup()
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min,
                max_size=self._max,
                timeout=max(self._timeout, 1.0),
                command_timeout=self._timeout,
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
            raise _map_error("open", exc, self.url, self._timeout) from exc
        if not migrate:
            return
        try:
            self._applied = await self._run("migrate", self._migrate)
            await self._listen()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        listener, self._listener = self._listener, None
        if listener is not None:
            await _close_quietly(listener)
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.move_on_after(self._timeout) as scope:
                await pool.close()
            if scope.cancelled_caught:
                pool.terminate()

    async def _migrate(self, conn: Any) -> tuple[int, ...]:
        applied: list[int] = []
        async with conn.transaction():
            # Serialises nodes starting together; released at commit or rollback.
            wait = max(MIGRATION_TIMEOUT, self._timeout)
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=wait)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS gladd_migrations ("
                " version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM gladd_migrations")}
            newest = max(done, default=0)
            if newest > LATEST:
                raise StoreError(
                    f"the database at {self.url} has schema version {newest}, newer than this "
                    f"gladd knows (up to {LATEST}): a newer gladd migrated it; upgrade gladd "
                    "on this node, or point it at another database"
                )
            for version, script in MIGRATIONS:
                if version not in done:
                    await conn.execute(script, timeout=wait)
                    await conn.execute(
                        "INSERT INTO gladd_migrations (version) VALUES ($1)", version
                    )
                    applied.append(version)
        for version in applied:
            logger.info("PostgreSQL store {}: applied schema migration {}", self.url, version)
        return tuple(applied)

    async def migration_status(self) -> MigrationStatus:
        async def work(conn: Any) -> int:
            if await conn.fetchval("SELECT to_regclass('gladd_migrations')") is None:
                return 0
            return cast(int, await conn.fetchval("SELECT max(version) FROM gladd_migrations"))

        current = await self._run("migration_status", work)
        return MigrationStatus(current=current or 0, latest=LATEST, applied=self._applied)

    # -- tasks -------------------------------------------------------------------------

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued:
        return (await self.enqueue_many([task], now=now))[0]

    async def enqueue_many(self, tasks: Sequence[NewTask], *, now: datetime) -> list[Enqueued]:
        now = utc(now)
        checked = [check_new_task(task, now=now) for task in tasks]  # TaskRejected
        if not tasks:
            return []
        done: dict[int, Enqueued] = {}
        todo = list(range(len(tasks)))
        for _ in range(3):  # a holder of a unique_key may finish in between: go again
            args = _enqueue_args([tasks[i] for i in todo], [checked[i] for i in todo], now)

            async def work(conn: Any, args: tuple[object, ...] = args) -> dict[int, Enqueued]:
                return await _enqueue_once(conn, args)

            got = await self._run("enqueue", work)
            done.update((todo[j], enqueued) for j, enqueued in got.items())
            todo = [i for j, i in enumerate(todo) if j not in got]
            if not todo:
                return [done[i] for i in range(len(tasks))]
        raise StoreError(f"enqueue: unique keys kept changing hands at {self.url}; try again")

    async def claim(
        self, *, worker: str, limit: int, now: datetime, kinds: Sequence[str] | None = None
    ) -> list[Task]:
        now = utc(now)
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        claim_id = secrets.randbits(63)
        sent = False

        async def work(conn: Any) -> list[Task]:
            nonlocal sent
            if sent:  # an earlier attempt's outcome is unknown: did it commit?
                rows = await conn.fetch(Q["claimed_by"], worker, claim_id)
                if rows:
                    return _sorted_claim(rows)
            sent = True
            if kinds is None:
                rows = await conn.fetch(Q["claim"], worker, now, limit, claim_id)
            else:
                rows = await conn.fetch(Q["claim_kinds"], worker, now, limit, claim_id, kinds)
            return _sorted_claim(rows)

        return await self._run("claim", work)

    async def finish(self, outcomes: Sequence[Outcome], *, now: datetime) -> list[bool]:
        now = utc(now)
        if not outcomes:
            return []
        args, first = _finish_args(outcomes, now)

        async def work(conn: Any) -> set[int]:
            return {row["id"] for row in await conn.fetch(Q["finish"], *args)}

        held = await self._run("finish", work)
        return [i in first and o.id in held for i, o in enumerate(outcomes)]

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
                verdicts = [_rescued(row, now, max_rescues) for row in victims]
                if verdicts:
                    ids, states, errors = (list(column) for column in zip(*verdicts, strict=True))
                    await conn.execute(Q["rescue_apply"], now, ids, states, errors)
            lost = dead | {r["owner"] for r in victims if not r["live"] and r["owner"]}
            return RescueReport(
                to_pending=tuple(i for i, state, _ in verdicts if state == TaskState.PENDING),
                to_dead=tuple(i for i, state, _ in verdicts if state == TaskState.DEAD),
                dead_workers=tuple(sorted(lost)),
            )

        return await self._run("rescue", work)

    async def forget_worker(self, worker: str) -> None:
        async def work(conn: Any) -> None:
            await conn.execute(Q["forget_worker"], worker)

        await self._run("forget_worker", work)

    async def get(self, task_id: int) -> Task | None:
        return await self._one("get", Q["get"], task_id)

    async def list(
        self,
        *,
        state: TaskState | None = None,
        kind: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Task]:
        state_text = None if state is None else str(state)

        async def work(conn: Any) -> list[Task]:
            rows = await conn.fetch(Q["list"], state_text, kind, before_id, limit)
            return [_task(row) for row in rows]

        return await self._run("list", work)

    async def cancel(self, task_id: int, *, now: datetime) -> Task | None:
        return await self._one("cancel", Q["cancel"], task_id, utc(now))

    async def retry(self, task_id: int, *, now: datetime) -> Task | None:
        now = utc(now)

        async def work(conn: Any) -> Task | None:
            try:
                row = await conn.fetchrow(Q["retry"], task_id, now)
            except asyncpg.UniqueViolationError:
                key = await conn.fetchval(
                    "SELECT unique_key FROM gladd_tasks WHERE id = $1", task_id
                )
                holder = await conn.fetchval(Q["unfinished_id_by_key"], key)
                raise unique_conflict(task_id, key, holder) from None
            return None if row is None else _task(row)

        return await self._run("retry", work)

    async def purge(self, *, finished_before: datetime) -> int:
        finished_before = utc(finished_before, "finished_before")

        async def work(conn: Any) -> int:
            status = await conn.execute(Q["purge"], finished_before, PURGE_BATCH)
            return int(status.rsplit(" ", 1)[-1])

        total = 0
        while True:  # bounded batches: each statement stays well under the query timeout
            deleted = await self._run("purge", work)
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    async def counts(self) -> dict[TaskState, int]:
        async def work(conn: Any) -> dict[TaskState, int]:
            found = {TaskState(r["state"]): int(r["n"]) for r in await conn.fetch(Q["counts"])}
            return {state: found.get(state, 0) for state in TaskState}

        return await self._run("counts", work)

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
        return await self._wakeup.wait(timeout)

    def _on_notify(self, *_: object) -> None:
        self._wakeup.notify()

    def _on_listener_lost(self, *_: object) -> None:
        self._listener = None
        if self._closed or self._reconnect is not None:
            return
        logger.warning(
            "PostgreSQL store {}: the listening connection was lost; waiting for work by "
            "polling until it is re-established",
            self.url,
        )
        self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _listen(self) -> None:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=max(self._timeout, 1.0))
        except Exception as exc:
            raise _map_error("listen", exc, self.url, self._timeout) from exc
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            await _close_quietly(conn)
            raise
        conn.add_termination_listener(self._on_listener_lost)
        self._listener = conn

    async def _relisten(self) -> None:
        try:
            while not self._closed:
                try:
                    await self._listen()
                except Exception:  # still down: a wait is a timed poll meanwhile
                    await anyio.sleep(LISTENER_RETRY)
                    continue
                if self._closed:  # closed while connecting
                    listener, self._listener = self._listener, None
                    if listener is not None:
                        await _close_quietly(listener)
                    return
                logger.info("PostgreSQL store {}: listening for new tasks again", self.url)
                self._on_notify()  # tasks may have arrived unheard: let waiters claim
                return
        finally:
            self._reconnect = None

    # -- plumbing ----------------------------------------------------------------------

    async def _one(self, op: str, query: str, *args: object) -> Task | None:
        async def work(conn: Any) -> Task | None:
            row = await conn.fetchrow(query, *args)
            return None if row is None else _task(row)

        return await self._run(op, work)

    async def _run(self, op: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection, under the guard, with errors mapped."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"{op}: the PostgreSQL store {self.url} is not open")

        async def attempt() -> T:
            ticket = self._acquires.begin()
            try:
                conn = await pool.acquire(timeout=self._timeout)
            except TimeoutError as exc:
                raise StoreUnavailable(
                    f"PostgreSQL store {self.url}: {op}: no connection within {self._timeout:g}s"
                    f" (query_timeout): all {self._max} pooled connections are busy, or the "
                    "server does not answer; check the server, or raise pool_max_size"
                ) from exc
            finally:
                self._acquires.end(ticket)
            try:
                for tries in range(3):
                    try:
                        return await work(conn)
                    except asyncpg.DeadlockDetectedError:
                        # The server rolled the statement back: nothing happened, run it again.
                        if tries == 2:
                            raise
            finally:
                await pool.release(conn)
            raise AssertionError("unreachable")

        try:
            return await (attempt() if self._guard is None else self._guard(attempt))
        except (StoreError, TaskRejected):
            raise
        except Exception as exc:
            raise _map_error(op, exc, self.url, self._timeout) from exc


# -- rows in and out -----------------------------------------------------------------------


async def _reset_connection(conn: Any) -> None:
    """What the pool does to a connection handed back: gladd keeps no session state on
    pooled connections (LISTEN has its own), so only an unfinished transaction is undone;
    asyncpg's default reset costs a round trip on every release."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _init_connection(conn: Any) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _close_quietly(conn: Any) -> None:
    try:
        with anyio.move_on_after(1.0):
            await conn.close()
    except Exception:  # it is being discarded either way
        conn.terminate()
    if not conn.is_closed():
        conn.terminate()


async def _enqueue_once(conn: Any, args: tuple[Any, ...]) -> dict[int, Enqueued]:
    """Enqueued per input index; an index is missing if its key's holder vanished."""
    found: dict[int, Enqueued] = {}
    for row in await conn.fetch(Q["enqueue"], *args):
        found.setdefault(row["ord"] - 1, Enqueued(task=_task(row), created=row["created"]))
    # A conflicting task committed by another node after this statement's snapshot was
    # taken is invisible to it: look those up again, with a fresh snapshot.
    keys: list[str | None] = args[-1]
    missing = [key for i, key in enumerate(keys) if i not in found]
    if missing:
        rows = await conn.fetch(Q["unfinished_by_keys"], missing)
        holders = {row["unique_key"]: _task(row) for row in rows}
        for i, key in enumerate(keys):
            if i not in found and key in holders:
                found[i] = Enqueued(task=holders[key], created=False)
    return found


def _enqueue_args(
    tasks: Sequence[NewTask], checked: Sequence[tuple[str, datetime]], now: datetime
) -> tuple[object, ...]:
    return (
        now,
        [t.kind for t in tasks],
        [payload for payload, _ in checked],
        [t.priority for t in tasks],
        [run_at for _, run_at in checked],
        [t.max_attempts for t in tasks],
        [t.timeout for t in tasks],
        [t.unique_key for t in tasks],  # last: _enqueue_once reads it
    )


def _finish_args(outcomes: Sequence[Outcome], now: datetime) -> tuple[tuple[object, ...], set[int]]:
    """Arrays per outcome type; an id named twice in one batch counts only the first time."""
    ok: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    failed: tuple[list[Any], list[Any], list[Any], list[Any]] = ([], [], [], [])
    released: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    cancelled: tuple[list[Any], list[Any]] = ([], [])
    seen: set[int] = set()
    first: set[int] = set()
    for i, o in enumerate(outcomes):
        if o.id in seen:
            continue
        seen.add(o.id)
        first.add(i)
        if isinstance(o, Succeeded):
            _append(ok, o.id, o.token, dump_json(o.result, f"result of task {o.id}"))
        elif isinstance(o, Failed):
            retry_at = None if o.retry_at is None else utc(o.retry_at, "retry_at")
            _append(failed, o.id, o.token, _error_json(o.error), retry_at)
        elif isinstance(o, Released):
            _append(released, o.id, o.token, utc(o.run_at, "run_at"))
        elif isinstance(o, Cancelled):
            _append(cancelled, o.id, o.token)
    return (now, *ok, *failed, *released, *cancelled), first


def _append(columns: tuple[list[Any], ...], *values: object) -> None:
    for column, value in zip(columns, values, strict=True):
        column.append(value)


def _error_json(error: TaskError) -> str:
    return json.dumps(
        {
            "type": error.type,
            "message": error.message,
            "attempt": error.attempt,
            "at": utc(error.at, "error.at").isoformat(),
        }
    )


def _task(row: Any) -> Task:
    timeout = row["timeout"]
    return Task(
        id=row["id"],
        kind=row["kind"],
        payload=row["payload"],
        state=TaskState(row["state"]),
        priority=row["priority"],
        run_at=row["run_at"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        timeout=timeout,
        unique_key=row["unique_key"],
        owner=row["owner"],
        token=row["token"],
        rescues=row["rescues"],
        deadline=row["deadline"],
        cancel_requested=row["cancel_requested"],
        result=row["result"],
        errors=tuple(
            TaskError(
                type=e["type"],
                message=e["message"],
                attempt=e["attempt"],
                at=datetime.fromisoformat(e["at"]),
            )
            for e in row["errors"]
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


def _rescued(row: Any, now: datetime, max_rescues: int) -> tuple[int, str, str]:
    """(id, new state, error JSON) of a running task taken back from its owner."""
    task = _task(row)
    error = TaskError(
        type=RESCUED,
        message=rescue_reason(task, now=now, live=row["live"]),
        attempt=task.attempt,
        at=now,
    )
    verdict = rescue_verdict(task, max_rescues=max_rescues, live=row["live"])
    return task.id, str(verdict), _error_json(error)


def _sorted_claim(rows: Sequence[Any]) -> list[Task]:
    tasks = [_task(row) for row in rows]
    tasks.sort(key=lambda t: (-t.priority, t.run_at, t.id))
    return tasks


# -- errors --------------------------------------------------------------------------------

_UNAVAILABLE_HINTS: tuple[tuple[str, str], ...] = (
    ("InvalidPasswordError", "the server rejected the password: fix it in the database URL"),
    (
        "InvalidAuthorizationSpecificationError",
        "the server refused this user: fix the user in the database URL or pg_hba.conf",
    ),
    (
        "InvalidCatalogNameError",
        "the database does not exist: create it (createdb) or fix its name in the URL",
    ),
    (
        "TooManyConnectionsError",
        "the server has no connection slots left: lower pool_max_size on the nodes "
        "or raise max_connections on the server",
    ),
    ("BreakerOpen", "the database circuit breaker is open after repeated failures"),
    ("CannotConnectNowError", "the server is starting up or shutting down: try again shortly"),
    ("AdminShutdownError", "the server is shutting down: try again once it is back"),
    ("ConnectionDoesNotExistError", "the connection was lost mid-query: server restart or network"),
    ("ConnectionFailureError", "the connection failed: check the server and the network"),
    ("PostgresConnectionError", "the connection failed: check the server and the network"),
    ("ConnectionRefusedError", "connection refused: is PostgreSQL running and listening there?"),
    ("gaierror", "the host name does not resolve: fix the host in the database URL"),
    ("ConnectionResetError", "the connection was reset: server restart or network"),
    ("InterfaceError", "the connection is no longer usable: server restart or network"),
)


def _map_error(op: str, exc: BaseException, url: str, timeout: float) -> StoreError:
    """One precise StoreError for a driver (or guard) error; never includes a password."""
    root: BaseException = exc
    given_up = ""
    last = getattr(exc, "last", None)  # the guard's RetriesExhausted carries the last error
    if isinstance(last, BaseException):
        given_up = f" (gave up: {exc})"
        root = last
    if isinstance(root, StoreError):
        return type(root)(f"{root}{given_up}")
    detail = f"{type(root).__name__}: {root}"
    if isinstance(root, ResilienceTimeout):  # the guard's own deadline, not query_timeout
        return StoreError(f"PostgreSQL store {url}: {op} gave up: {root}")
    if isinstance(root, TimeoutError | asyncpg.QueryCanceledError):
        return StoreError(
            f"PostgreSQL store {url}: {op} timed out after {timeout:g}s (query_timeout); "
            f"the server is overloaded or a lock is held too long{given_up}"
        )
    names = {cls.__name__ for cls in type(root).__mro__}
    for name, hint in _UNAVAILABLE_HINTS:
        if name in names:
            return StoreUnavailable(f"PostgreSQL store {url}: {op}: {hint} ({detail}){given_up}")
    if isinstance(root, OSError):
        return StoreUnavailable(
            f"PostgreSQL store {url}: {op}: cannot connect ({detail}); check the host, port "
            f"and network{given_up}"
        )
    if isinstance(root, asyncpg.UniqueViolationError):
        return StoreError(
            f"PostgreSQL store {url}: {op}: another unfinished task holds the same unique_key "
            f"({root.detail or root}){given_up}"
        )
    return StoreError(f"PostgreSQL store {url}: {op} failed: {detail}{given_up}")
