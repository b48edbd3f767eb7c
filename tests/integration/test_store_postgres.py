"""PostgresStore beyond the shared contract: many nodes, wake-ups, migrations, failures.

The contract suite (``test_store_contract.py``) holds every store to the same state
machine; here are the things only a shared PostgreSQL has: concurrent claimers, LISTEN /
NOTIFY between nodes, migrations racing at start-up, and what an operator sees when the
server is unreachable, refuses the password, or is slow.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest

from gladd.errors import RetriesExhausted, StoreError, StoreNotFound, StoreUnavailable
from gladd.store.base import Enqueued, NewTask, Succeeded, TaskState
from gladd.store.postgres.queries import Q
from gladd.store.postgres.schema import LATEST, MIGRATIONS
from gladd.store.postgres.store import PostgresStore
from gladd.store.urls import mask_url

KNOWN = tuple(v for v, _ in MIGRATIONS)
"""Every version this gladd has: numbers may have gaps (parts developed side by side)."""

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

T = TypeVar("T")
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _database_url(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(postgres_url: str) -> AsyncIterator[str]:
    """An empty database of its own on the test server, dropped afterwards."""
    name = f"gladd_pg_{secrets.token_hex(4)}"
    await _admin(postgres_url, f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(postgres_url, name)
    finally:
        await _admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def db_url(postgres_url: str) -> Iterator[str]:
    """This module's own database, so the contract suite's truncations never meet ours."""
    name = f"gladd_pg_{secrets.token_hex(4)}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _database_url(postgres_url, name)
    finally:
        asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@asynccontextmanager
async def node(url: str, **options: Any) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[PostgresStore]:
    async with node(db_url) as opened:
        await _admin(
            db_url, "TRUNCATE gladd_tasks, gladd_workers, gladd_schedules RESTART IDENTITY"
        )
        await opened.wait_for_work(0)  # forget wake-ups left by earlier tests
        yield opened


def _tasks(n: int, kind: str = "noop") -> list[NewTask]:
    return [NewTask(kind=kind, payload={"n": i}) for i in range(n)]


# -- many nodes ------------------------------------------------------------------------------


async def test_two_nodes_claiming_at_once_never_share_a_task(
    store: PostgresStore, db_url: str
) -> None:
    enqueued = await store.enqueue_many(_tasks(2000), now=NOW)
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    async def drain(node_store: PostgresStore, name: str) -> None:
        while batch := await node_store.claim(worker=name, limit=25, now=NOW):
            claimed[name].extend(t.id for t in batch)
            await anyio.sleep(0)

    async with node(db_url) as other, anyio.create_task_group() as tg:
        tg.start_soon(drain, store, "a")
        tg.start_soon(drain, other, "b")

    a, b = set(claimed["a"]), set(claimed["b"])
    assert len(a) == len(claimed["a"])
    assert len(b) == len(claimed["b"])
    assert not a & b, "a task was claimed by both nodes"
    assert a | b == {e.id for e in enqueued}
    assert a, "node b claimed everything: the claims did not run side by side"
    assert b, "node a claimed everything: the claims did not run side by side"


async def _race(
    racers: list[PostgresStore], *, since: datetime | None, tick: datetime
) -> list[list[Enqueued] | None]:
    """What each racer's advance of schedule "race" from ``since`` to ``tick`` returned, all
    started at once."""
    results: list[list[Enqueued] | None] = [None] * len(racers)

    async def advance(i: int) -> None:
        task = NewTask(kind="tick", payload={"node": i}, schedule="race", scheduled_for=tick)
        results[i] = await racers[i].advance_schedule(
            "race", spec="every minute", expected=since, to=tick, tasks=[task], now=tick
        )

    async with anyio.create_task_group() as tg:
        for i in range(len(racers)):
            tg.start_soon(advance, i)
    return results


async def test_nodes_racing_to_advance_a_schedule_fire_each_tick_once(
    store: PostgresStore, db_url: str
) -> None:
    """Eight nodes (a pool each) advance the same schedule from the same tick at once, 50
    times over: each time exactly one stores its task, the others store nothing."""
    racers, rounds = 8, 50
    async with AsyncExitStack() as stack:
        others = [
            await stack.enter_async_context(node(db_url, pool_max_size=2))
            for _ in range(racers - 1)
        ]
        nodes = [store, *others]
        expected: datetime | None = None
        for round_ in range(rounds):
            tick = NOW + timedelta(minutes=round_)
            results = await _race(nodes, since=expected, tick=tick)
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, f"round {round_}: {len(winners)} nodes advanced the tick"
            expected = tick
    stored = await store.list(limit=10 * rounds)
    assert len(stored) == rounds
    assert sorted(t.scheduled_for for t in stored) == [  # type: ignore[type-var]
        NOW + timedelta(minutes=r) for r in range(rounds)
    ]
    state = (await store.schedule_states())["race"]
    assert state.last_tick == NOW + timedelta(minutes=rounds - 1)
    assert state.last_task == max(t.id for t in stored)


async def test_enqueue_on_one_node_wakes_a_waiter_on_another(
    store: PostgresStore, db_url: str
) -> None:
    woke: list[bool] = []

    async def wait() -> None:
        woke.append(await store.wait_for_work(10))

    async with node(db_url) as producer, anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.05)
        started = time.monotonic()
        await producer.enqueue(NewTask(kind="noop"), now=NOW)
        with anyio.fail_after(5):
            while not woke:
                await anyio.sleep(0.01)
    assert woke == [True]
    assert time.monotonic() - started < 2, "woke by timeout, not by the notification"


async def test_a_store_that_only_enqueues_does_not_listen_for_work_until_it_waits(
    db_url: str,
) -> None:
    """``listen_for_work=False`` (gladd.Client's store): no LISTEN for new tasks, so its
    own enqueues' NOTIFYs are not delivered to it. Should it wait for work after all, its
    first wait wakes at once (an enqueue just before it started listening would have gone
    unheard), later waits time out without work, and another node's enqueue wakes it."""
    async with node(db_url, listen_for_work=False) as client, node(db_url) as other:
        for _ in range(3):
            await client.enqueue(NewTask(kind="noop"), now=NOW)
        listener = client._listener
        assert listener is not None
        assert not listener.work_wanted
        assert await client.wait_for_work(0.1) is True  # listening from now: claim again
        assert listener.work_wanted
        started = time.monotonic()
        assert await client.wait_for_work(0.2) is False
        assert time.monotonic() - started >= 0.19
        woke: list[bool] = []

        async def wait() -> None:
            woke.append(await client.wait_for_work(10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            started = time.monotonic()
            await other.enqueue(NewTask(kind="noop"), now=NOW)
        assert woke == [True]
        assert time.monotonic() - started < 2, "woke by timeout, not by the notification"


async def test_waiting_without_work_times_out(store: PostgresStore) -> None:
    started = time.monotonic()
    assert await store.wait_for_work(0.2) is False
    assert time.monotonic() - started >= 0.19


async def test_a_lost_listener_is_reestablished(store: PostgresStore, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
        )
        assert killed == 1
        # Meanwhile a wait is a timed poll; it must not hang or raise.
        await store.wait_for_work(0.3)
        async with node(db_url) as producer:
            with anyio.fail_after(8):
                while True:
                    await store.wait_for_work(0)  # drain the catch-up wake-up
                    await producer.enqueue(NewTask(kind="noop"), now=NOW)
                    if await store.wait_for_work(0.5):
                        break
        listening = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
        )
        assert listening >= 1
    finally:
        await conn.close()


async def test_a_new_query_timeout_applies_to_the_next_queries(
    store: PostgresStore, db_url: str
) -> None:
    task = await store.enqueue(NewTask(kind="noop"), now=NOW)
    blocker = await asyncpg.connect(db_url)
    try:
        async with node(db_url) as patient, blocker.transaction():
            await blocker.execute("SELECT id FROM gladd_tasks WHERE id = $1 FOR UPDATE", task.id)
            patient.query_timeout = 0.3  # what a reload of database.query_timeout does
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"cancel timed out after 0\.3s \(query_timeout\)"):
                await patient.cancel(task.id, now=NOW)
            assert time.monotonic() - started < 2, "still the 5s timeout it opened with"
        with pytest.raises(ValueError, match="longer than 0s"):
            patient.query_timeout = 0
    finally:
        await blocker.close()


# -- query plans -----------------------------------------------------------------------------


async def test_claims_walk_the_claim_index_even_before_statistics_catch_up(
    postgres_url: str,
) -> None:
    # Right after a burst of enqueues the planner's statistics still describe an empty table,
    # and with default settings it sorts every pending row on each claim. gladd's connections
    # price sorts out (and JIT, which such a price would otherwise wake) so the claim stays on
    # the partial index gladd_tasks_claim.
    async with fresh_database(postgres_url) as url, node(url) as store:
        for _ in range(10):
            await store.enqueue_many(_tasks(1000), now=NOW)

        async def plan_and_settings(conn: Any) -> tuple[str, str, str]:
            plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + Q["claim"], "w", NOW, 10, 1, "")
            return (
                str(plan),
                await conn.fetchval("SHOW jit"),
                await conn.fetchval("SHOW enable_sort"),
            )

        plan, jit, enable_sort = await store._run("plan", plan_and_settings)
    assert (jit, enable_sort) == ("off", "off")
    assert "gladd_tasks_claim" in plan
    assert '"Sort"' not in plan, f"the claim sorts pending tasks: {plan}"


# -- migrations ------------------------------------------------------------------------------


async def test_four_nodes_starting_together_migrate_exactly_once(postgres_url: str) -> None:
    async with fresh_database(postgres_url) as url:
        stores = [PostgresStore(url) for _ in range(4)]
        try:
            async with anyio.create_task_group() as tg:
                for s in stores:
                    tg.start_soon(s.open)
            statuses = [await s.migration_status() for s in stores]
        finally:
            for s in stores:
                await s.close()
        conn = await asyncpg.connect(url)
        try:
            versions = [
                r["version"] for r in await conn.fetch("SELECT version FROM gladd_migrations")
            ]
        finally:
            await conn.close()
    assert sorted(versions) == list(KNOWN)
    applied = [v for status in statuses for v in status.applied]
    assert sorted(applied) == list(KNOWN), "a migration ran twice or never"
    assert all(s.current == s.latest == LATEST for s in statuses)


async def test_a_version_1_database_upgrades_and_keeps_its_tasks(postgres_url: str) -> None:
    """A database the previous release made (schema 1, a task in it) gains the traceparent
    column when a node of this release opens it; its task is served as before."""
    async with fresh_database(postgres_url) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(dict(MIGRATIONS)[1])
            await conn.execute(
                "CREATE TABLE gladd_migrations (version integer PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now());"
                "INSERT INTO gladd_migrations (version) VALUES (1);"
                "INSERT INTO gladd_tasks (kind, payload) VALUES ('k', '{\"n\": 1}')"
            )
        finally:
            await conn.close()
        store = PostgresStore(url)
        await store.open()
        try:
            assert (await store.migration_status()).applied == KNOWN[1:]
            (task,) = await store.list()
            assert (task.kind, task.payload, task.traceparent) == ("k", {"n": 1}, None)
            traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            stored = await store.enqueue(NewTask(kind="k", traceparent=traced), now=NOW)
            assert (await store.get(stored.id)).traceparent == traced  # type: ignore[union-attr]
        finally:
            await store.close()


async def test_a_version_missing_below_the_newest_is_still_applied(postgres_url: str) -> None:
    """Versions are applied by number, whichever are missing: a database that has a newer
    version but not an older one (parts developed side by side each take a number, and
    merge in either order) gets the older one when a node opens it; the status says so."""
    async with fresh_database(postgres_url) as url:
        made = PostgresStore(url)
        await made.open()
        await made.close()
        conn = await asyncpg.connect(url)
        try:  # as if version 4 (flow control) came after the rest
            await conn.execute(
                "DROP TABLE gladd_limits, gladd_limit_tokens, gladd_pauses;"
                "DELETE FROM gladd_migrations WHERE version = 4"
            )
        finally:
            await conn.close()
        found = PostgresStore(url)
        await found.open(migrate=False)
        try:
            status = await found.migration_status()
        finally:
            await found.close()
        assert (status.current, status.pending) == (LATEST, (4,))
        again = PostgresStore(url)
        await again.open()
        try:
            status = await again.migration_status()
            assert (status.applied, status.pending) == ((4,), ())
            assert await again.pauses(now=NOW) == []  # its tables are back
        finally:
            await again.close()


async def test_status_without_migrating_leaves_the_schema_alone(postgres_url: str) -> None:
    async with fresh_database(postgres_url) as url:
        store = PostgresStore(url)
        await store.open(migrate=False)
        try:
            status = await store.migration_status()
        finally:
            await store.close()
        assert (status.current, status.pending) == (0, KNOWN)
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('gladd_tasks')") is None
        finally:
            await conn.close()


async def test_without_create_a_database_without_gladd_tables_is_refused(
    postgres_url: str,
) -> None:
    async with fresh_database(postgres_url) as url:
        store = PostgresStore(url)
        with pytest.raises(StoreNotFound, match="has no gladd tables"):
            await store.open(create=False)
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT to_regclass('gladd_migrations')") is None
        finally:
            await conn.close()
        async with node(url):  # `gladd run` creates them
            pass
        existing = PostgresStore(url)
        await existing.open(create=False)
        try:
            assert await existing.list() == []
        finally:
            await existing.close()


async def test_a_schema_newer_than_the_code_is_refused(postgres_url: str) -> None:
    async with fresh_database(postgres_url) as url:
        async with node(url):
            pass
        await _admin(url, "INSERT INTO gladd_migrations (version) VALUES (999)")
        store = PostgresStore(url)
        with pytest.raises(StoreError, match=r"schema version 999.*upgrade gladd"):
            await store.open()
        with pytest.raises(StoreError, match="not open"):
            await store.get(1)


# -- failures an operator sees ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_url_shown_never_holds_the_password() -> None:
    store = PostgresStore("postgresql://app:hunter2@db.example:5432/gladd")
    assert store.url == "postgresql://app:***@db.example:5432/gladd"
    assert mask_url("postgresql://h/db?password=hunter2&sslmode=require") == (
        "postgresql://h/db?password=***&sslmode=require"
    )


async def test_a_refused_port_is_unavailable_with_the_masked_url() -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{_free_port()}/gladd"
    with pytest.raises(StoreUnavailable) as caught:
        await PostgresStore(url).open()
    message = str(caught.value)
    assert "hunter2" not in message
    assert "postgres:***@127.0.0.1" in message
    assert "refused" in message
    assert caught.value.__cause__ is not None


async def _refuse_password(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Just enough of the PostgreSQL protocol to reject a password (SQLSTATE 28P01)."""
    length, code = struct.unpack("!ii", await reader.readexactly(8))
    if code == 80877103:  # SSLRequest: "no", then the real startup message
        writer.write(b"N")
        length, code = struct.unpack("!ii", await reader.readexactly(8))
    await reader.readexactly(length - 8)
    writer.write(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
    await writer.drain()
    _, size = struct.unpack("!ci", await reader.readexactly(5))
    await reader.readexactly(size - 4)
    fields = b"".join(
        tag + text.encode() + b"\0"
        for tag, text in (
            (b"S", "FATAL"),
            (b"V", "FATAL"),
            (b"C", "28P01"),
            (b"M", 'password authentication failed for user "app"'),
        )
    )
    writer.write(b"E" + struct.pack("!i", len(fields) + 5) + fields + b"\0")
    await writer.drain()
    writer.close()


async def test_a_wrong_password_is_unavailable_and_says_what_to_fix() -> None:
    server = await asyncio.start_server(_refuse_password, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"postgresql://app:hunter2@127.0.0.1:{port}/gladd"
        with pytest.raises(StoreUnavailable) as caught:
            await PostgresStore(url).open()
    finally:
        server.close()
    message = str(caught.value)
    assert "hunter2" not in message
    assert f"app:***@127.0.0.1:{port}" in message
    assert "password" in message
    assert type(caught.value.__cause__).__name__ == "InvalidPasswordError"


async def test_a_missing_database_is_unavailable(postgres_url: str) -> None:
    url = _database_url(postgres_url, "gladd_no_such_db")
    with pytest.raises(StoreUnavailable, match=r"does not exist.*create it"):
        await PostgresStore(url).open()


async def test_a_query_stuck_on_a_lock_times_out_with_a_precise_error(
    store: PostgresStore, db_url: str
) -> None:
    task = await store.enqueue(NewTask(kind="noop"), now=NOW)
    blocker = await asyncpg.connect(db_url)
    try:
        async with node(db_url, query_timeout=0.2) as impatient, blocker.transaction():
            await blocker.execute("SELECT id FROM gladd_tasks WHERE id = $1 FOR UPDATE", task.id)
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"cancel timed out after 0\.2s \(query_timeout\)"):
                await impatient.cancel(task.id, now=NOW)
            assert time.monotonic() - started < 2
            assert (await impatient.get(task.id)) is not None  # the pool is still usable
    finally:
        await blocker.close()


# -- unique keys across nodes ---------------------------------------------------------------


async def _until_blocked_on_a_lock(conn: asyncpg.Connection) -> None:
    """Until a gladd connection waits for a lock (the other node's uncommitted row)."""
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'gladd' AND wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    with anyio.fail_after(10):
        while not await conn.fetchval(query):
            await anyio.sleep(0.01)


@pytest.mark.parametrize("ending", ["commit", "rollback"])
async def test_a_lone_enqueue_of_a_key_another_node_is_inserting_waits_for_it(
    store: PostgresStore, db_url: str, ending: str
) -> None:
    """Another node's task with the same unique key, inserted but not committed: the enqueue
    waits for it, then answers that task's id (it committed) or stores its own (it did not)."""
    other = await asyncpg.connect(db_url)
    got: list[Enqueued] = []
    try:
        inserting = other.transaction()
        await inserting.start()
        held = await other.fetchval(
            "INSERT INTO gladd_tasks (kind, unique_key) VALUES ('noop', 'order-17') RETURNING id"
        )

        async def enqueue() -> None:
            got.append(await store.enqueue(NewTask(kind="noop", unique_key="order-17"), now=NOW))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(enqueue)
            await _until_blocked_on_a_lock(other)
            await (inserting.commit() if ending == "commit" else inserting.rollback())
    finally:
        await other.close()
    [enqueued] = got
    keyed = [t.id for t in await store.list() if t.unique_key == "order-17"]
    if ending == "commit":
        assert (enqueued.id, enqueued.created) == (held, False)
        assert keyed == [held]
    else:
        assert enqueued.created
        assert keyed == [enqueued.id] != [held]


# -- claims ----------------------------------------------------------------------------------


async def _finished_tasks(conn: asyncpg.Connection, n: int) -> None:
    """``n`` succeeded tasks by plain SQL: the table a long-running store has."""
    await conn.execute(
        "INSERT INTO gladd_tasks (kind, state, finished_at)"
        " SELECT 'noop', 'succeeded', now() FROM generate_series(1, $1)",
        n,
    )


async def test_claims_use_the_pending_index_among_many_finished_tasks(
    store: PostgresStore, db_url: str
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await _finished_tasks(conn, 100_000)
        await store.enqueue_many(_tasks(10), now=NOW)
        await conn.execute("ANALYZE gladd_tasks")
        for query, args in (
            (Q["claim"], ("w", NOW, 10, 1, "")),
            (Q["claim_kinds"], ("w", NOW, 10, 1, ["noop"], "")),
        ):
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + query, *args))
            assert "gladd_tasks_claim" in plan, plan
            assert "Seq Scan on gladd_tasks" not in plan, plan
        # A finish finds its rows by primary key, however many tasks are running.
        empty: list[Any] = []
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN " + Q["finish"],
                NOW,
                [1, 2],
                [1, 1],
                ["1", "1"],
                ["[]", "[]"],
                *[empty] * 12,
                "[]",
            )
        )
        assert "gladd_tasks_pkey" in plan, plan
        assert "gladd_tasks_running" not in plan, plan
    finally:
        await conn.close()
    claimed = await store.claim(worker="w", limit=100, now=NOW)
    assert len(claimed) == 10


async def test_the_running_list_reads_the_running_index_on_a_generic_plan_too(
    store: PostgresStore, db_url: str
) -> None:
    """The console's "running now" among many finished tasks: never a scan of the table,
    not even on the generic plan PostgreSQL switches to after five executions."""
    conn = await asyncpg.connect(db_url)
    try:
        await _finished_tasks(conn, 100_000)
        await store.enqueue_many(_tasks(3), now=NOW)
        await conn.execute("ANALYZE gladd_tasks")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE running_now AS {Q['list_running'].rstrip().rstrip(';')}")
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN EXECUTE running_now('running', NULL, NULL, 20)")
        )
        assert "gladd_tasks_running" in plan, plan
        assert "gladd_tasks_pkey" not in plan, plan
        assert "Seq Scan" not in plan, plan
    finally:
        await conn.close()
    claimed = await store.claim(worker="w", limit=2, now=NOW)
    running = await store.list(state=TaskState.RUNNING, limit=20)
    assert sorted(t.id for t in running) == sorted(t.id for t in claimed)


async def test_a_claim_repeated_after_an_unknown_outcome_returns_what_it_took(
    db_url: str, store: PostgresStore
) -> None:
    """The guard may run a claim again when the first answer was lost; nothing is lost."""

    async def lose_first_answer(call: Callable[[], Awaitable[T]]) -> T:
        await call()  # committed, but pretend the reply never arrived
        return await call()

    await store.enqueue_many(_tasks(5), now=NOW)
    async with node(db_url, guard=lose_first_answer) as guarded:
        claimed = await guarded.claim(worker="w", limit=3, now=NOW)
    assert len(claimed) == 3
    counts = await store.counts()
    assert counts[TaskState.RUNNING] == 3, "the repeat claimed more than the caller got"
    assert counts[TaskState.PENDING] == 2


async def test_a_claim_whose_answer_was_lost_for_good_is_returned_by_the_next_claim(
    db_url: str, store: PostgresStore
) -> None:
    """Every attempt of a claim failed, the first after it committed: the worker's next
    claim hands over what it took rather than leave it running under a live worker."""
    lose: list[bool] = []  # armed once the store is open

    async def commit_then_lose(call: Callable[[], Awaitable[T]]) -> T:
        result = await call()
        if lose and lose.pop():
            raise ConnectionResetError("the reply never arrived")
        return result

    await store.enqueue_many(_tasks(5), now=NOW)
    async with node(db_url, guard=commit_then_lose) as guarded:
        lose.append(True)
        with pytest.raises(StoreUnavailable):
            await guarded.claim(worker="w", limit=3, now=NOW)
        assert (await store.counts())[TaskState.RUNNING] == 3  # committed, unseen
        recovered = await guarded.claim(worker="w", limit=3, now=NOW)
        assert len(recovered) == 3
        assert all(t.owner == "w" and t.state is TaskState.RUNNING for t in recovered)
        counts = await store.counts()
        assert (counts[TaskState.RUNNING], counts[TaskState.PENDING]) == (3, 2)
        nxt = await guarded.claim(worker="w", limit=3, now=NOW)
        assert len(nxt) == 2
        assert not {t.id for t in nxt} & {t.id for t in recovered}


async def test_the_guard_sees_driver_errors_and_retries_a_lost_connection(
    store: PostgresStore, db_url: str
) -> None:
    seen: list[str] = []

    async def retry_once(call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            seen.append(type(exc).__name__)
            return await call()

    task = await store.enqueue(NewTask(kind="noop"), now=NOW)
    blocker = await asyncpg.connect(db_url)
    results: list[Any] = []
    try:
        async with node(db_url, guard=retry_once) as guarded, anyio.create_task_group() as tg:
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("SELECT 1 FROM gladd_tasks WHERE id = $1 FOR UPDATE", task.id)

            async def cancel() -> None:
                results.append(await guarded.cancel(task.id, now=NOW))

            tg.start_soon(cancel)
            with anyio.fail_after(5):  # the cancel waits on the lock: cut its connection
                while not await blocker.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ):
                    await anyio.sleep(0.02)
            await lock.rollback()  # the guard's second attempt goes through
    finally:
        await blocker.close()
    assert seen == ["ConnectionDoesNotExistError"]
    assert results[0].state is TaskState.CANCELLED


async def test_finish_applies_a_batch_and_reports_stale_tokens_in_order(
    store: PostgresStore,
) -> None:
    await store.enqueue_many(_tasks(3), now=NOW)
    a, b, c = await store.claim(worker="w", limit=3, now=NOW)
    later = NOW + timedelta(seconds=1)
    done = await store.finish(
        [
            Succeeded(id=a.id, token=a.token, result={"ok": 1}),
            Succeeded(id=b.id, token=b.token + 1),
            Succeeded(id=c.id, token=c.token),
        ],
        now=later,
    )
    assert done == [True, False, True]
    stored = await store.get(a.id)
    assert stored is not None
    assert stored.state is TaskState.SUCCEEDED
    assert stored.result == {"ok": 1}
    assert stored.finished_at == later


async def test_a_guard_that_gives_up_surfaces_as_store_unavailable(db_url: str) -> None:
    async def give_up(call: Callable[[], Awaitable[T]]) -> T:
        last = ConnectionRefusedError(111, "Connection refused")
        raise RetriesExhausted("db", 3, "attempts", last) from last

    async with node(db_url) as plain:
        plain._guard = give_up  # after open(): open() runs through the guard too
        with pytest.raises(StoreUnavailable, match=r"get: connection refused.*gave up") as caught:
            await plain.get(1)
    assert isinstance(caught.value.__cause__, RetriesExhausted)
