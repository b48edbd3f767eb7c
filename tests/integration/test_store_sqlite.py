"""What only the SQLite store promises: a real file that survives, migrates and shares."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from gladd.errors import StoreError, StoreNotFound, StoreUnavailable, StoreUnusable
from gladd.store import Enqueued, NewTask, Succeeded, TaskState
from gladd.store.sqlite.queries import Q
from gladd.store.sqlite.rows import COLUMNS, to_us
from gladd.store.sqlite.schema import migrations
from gladd.store.sqlite.store import SQLiteStore, add_functions

pytestmark = pytest.mark.anyio

BASE = datetime(2026, 1, 1, tzinfo=UTC)
LATEST = migrations()[-1][0]
KNOWN = tuple(v for v, _ in migrations())
"""Every version this gladd has: numbers may have gaps (parts developed side by side)."""


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "gladd.db"


@pytest.fixture
async def store(db: Path, anyio_backend: str) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(db)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_tasks_survive_close_and_reopen(db: Path) -> None:
    first = SQLiteStore(db)
    await first.open()
    enqueued = await first.enqueue_many(
        [NewTask(kind="k", payload={"i": i}, unique_key=f"u{i}") for i in range(3)], now=BASE
    )
    [claimed] = await first.claim(worker="w1", limit=1, now=at(1))
    await first.finish([Succeeded(id=claimed.id, token=claimed.token, result=[1])], now=at(2))
    before = [await first.get(e.id) for e in enqueued]
    await first.purge(finished_before=at(3))
    await first.close()

    again = SQLiteStore(db)
    await again.open()
    try:
        assert [await again.get(e.id) for e in enqueued[1:]] == before[1:]
        assert await again.get(claimed.id) is None
        assert (await again.enqueue(NewTask(kind="k", unique_key="u1"), now=at(4))).created is False
        # Ids are never reused, even the purged highest one: they key the fencing tokens.
        newest = await again.enqueue(NewTask(kind="k"), now=at(4))
        assert newest.id == enqueued[-1].id + 1
    finally:
        await again.close()


async def test_a_version_1_database_upgrades_and_keeps_its_tasks(db: Path) -> None:
    """A database the previous release made (schema 1, a task in it) gains the traceparent
    column on the next open; its task is served as before, without a trace context."""
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.executescript(dict(migrations())[1])
    conn.executescript(Q["create_migrations_table"])
    conn.execute(Q["record_migration"], (1, 0))
    conn.execute("INSERT INTO gladd_tasks (kind, payload) VALUES ('k', '{\"n\": 1}')")
    conn.commit()
    conn.close()
    store = SQLiteStore(db)
    await store.open()
    try:
        status = await store.migration_status()
        assert status.applied == KNOWN[1:]
        task = await store.get(1)
        assert task is not None
        assert (task.kind, task.payload, task.traceparent) == ("k", {"n": 1}, None)
        traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        stored = await store.enqueue(NewTask(kind="k", traceparent=traced), now=at(1))
        assert (await store.get(stored.id)).traceparent == traced  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_migrations_apply_once_and_are_recorded(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    status = await store.migration_status()
    assert (status.current, status.latest) == (LATEST, LATEST)
    assert status.applied == KNOWN
    await store.close()
    await store.open()  # a reopen finds nothing to do
    status = await store.migration_status()
    assert (status.current, status.applied) == (LATEST, ())
    await store.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT version, applied_at FROM gladd_migrations").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert [version for version, _ in rows] == list(KNOWN)
    assert all(isinstance(applied_at, int) for _, applied_at in rows)
    assert mode == "wal"


async def test_a_version_missing_below_the_newest_is_still_applied(db: Path) -> None:
    """Versions are applied by number, whichever are missing: a database that has a newer
    version but not an older one (parts developed side by side each take a number, and
    merge in either order) gets the older one on the next open; the status says so."""
    store = SQLiteStore(db)
    await store.open()
    await store.close()
    with sqlite3.connect(db) as conn:  # as if version 4 (flow control) came after the rest
        conn.execute("DROP TABLE gladd_limit_tokens")
        conn.execute("DROP TABLE gladd_pauses")
        conn.execute("DELETE FROM gladd_migrations WHERE version = 4")
    found = SQLiteStore(db)
    await found.open(migrate=False)
    status = await found.migration_status()
    await found.close()
    assert (status.current, status.pending) == (LATEST, (4,))

    again = SQLiteStore(db)
    await again.open()
    try:
        status = await again.migration_status()
        assert (status.applied, status.pending) == ((4,), ())
        assert await again.pauses(now=datetime.now(UTC)) == []  # its table is back
    finally:
        await again.close()


async def test_status_without_migrating_reports_the_schema_as_found(db: Path) -> None:
    missing = SQLiteStore(db)
    with pytest.raises(StoreError, match=f"no SQLite database at {db} yet: `gladd db migrate`"):
        await missing.open(migrate=False)
    assert not db.exists(), "reading the status must not create the database"

    db.parent.mkdir()
    sqlite3.connect(db).close()  # a file gladd never migrated
    empty = SQLiteStore(db)
    await empty.open(migrate=False)
    status = await empty.migration_status()
    await empty.close()
    assert (status.current, status.pending, status.applied) == (0, KNOWN, ())

    migrated = SQLiteStore(db)
    await migrated.open()
    await migrated.close()
    again = SQLiteStore(db)
    await again.open(migrate=False)
    status = await again.migration_status()
    await again.close()
    assert (status.current, status.pending) == (LATEST, ())


async def test_without_create_a_missing_or_foreign_file_is_refused_and_nothing_made(
    db: Path,
) -> None:
    missing = SQLiteStore(db)
    with pytest.raises(StoreNotFound, match=f"no SQLite database at {db} yet: .*nothing was"):
        await missing.open(create=False)
    assert not db.exists()
    assert not db.parent.exists(), "not even its directory"

    db.parent.mkdir()
    sqlite3.connect(db).close()  # a file, but not gladd's
    foreign = SQLiteStore(db)
    with pytest.raises(StoreNotFound, match=f"{db} is not a gladd store"):
        await foreign.open(create=False)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)

    made = SQLiteStore(db)
    await made.open()  # `gladd db migrate`, `gladd run`
    await made.close()
    existing = SQLiteStore(db)
    await existing.open(create=False)
    assert await existing.list() == []
    await existing.close()


async def test_a_database_from_a_newer_gladd_is_refused(db: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO gladd_migrations VALUES (?, 0)", (LATEST + 1,))
    newer = SQLiteStore(db)
    message = (
        f"SQLite database {db} has schema version {LATEST + 1}, but this gladd knows "
        f"versions up to {LATEST} only: upgrade gladd"
    )
    with pytest.raises(StoreError, match=message):
        await newer.open()
    with pytest.raises(StoreError, match="not open"):
        await newer.counts()


async def test_an_unusable_path_gives_a_precise_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match=f"cannot create directory {blocker}/sub"):
        await SQLiteStore(blocker / "sub" / "gladd.db").open()
    with pytest.raises(StoreError, match="is not a SQLite database"):
        await SQLiteStore(blocker).open()


def corrupt_copy(of: Path, to: Path) -> Path:
    """A copy of database ``of`` whose first page (the schema) is overwritten with noise."""
    data = bytearray(of.read_bytes())
    data[100:4096] = random.Random(5).randbytes(4096 - 100)
    to.write_bytes(bytes(data))
    return to


async def test_a_file_that_is_not_a_database_is_unusable_not_unavailable(tmp_path: Path) -> None:
    noise = tmp_path / "noise.db"
    noise.write_bytes(random.Random(1).randbytes(8192))
    with pytest.raises(StoreUnusable, match=f"{noise} is not a SQLite database"):
        await SQLiteStore(noise).open()


async def test_a_corrupt_database_is_unusable_not_unavailable(db: Path, tmp_path: Path) -> None:
    store = SQLiteStore(db)
    await store.open()
    await store.close()
    broken = corrupt_copy(db, tmp_path / "broken.db")
    with pytest.raises(StoreUnusable, match="is corrupt: database disk image is malformed"):
        await SQLiteStore(broken).open()


async def test_a_store_locked_past_the_busy_timeout_is_unavailable(db: Path) -> None:
    store = SQLiteStore(db, busy_timeout=0.05)
    await store.open()
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.enqueue(NewTask(kind="k"), now=BASE)
        holder.execute("ROLLBACK")
        assert (await store.enqueue(NewTask(kind="k"), now=BASE)).created
    finally:
        holder.close()
        await store.close()


async def test_two_stores_on_one_file_share_the_tasks(db: Path) -> None:
    one, two = SQLiteStore(db), SQLiteStore(db)
    await one.open()
    await two.open()
    try:
        await one.enqueue_many([NewTask(kind="k") for _ in range(300)], now=BASE)
        [first] = await one.claim(worker="w1", limit=1, now=at(1))
        seen_by_two = await two.get(first.id)
        assert seen_by_two == first
        assert (await two.counts())[TaskState.RUNNING] == 1

        claimed: list[int] = []

        async def claimer(store: SQLiteStore, worker: str) -> None:
            while batch := await store.claim(worker=worker, limit=5, now=at(2)):
                claimed.extend(t.id for t in batch)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for n in range(5):
                    tg.start_soon(claimer, one, f"one-{n}")
                    tg.start_soon(claimer, two, f"two-{n}")
        assert len(claimed) == len(set(claimed)) == 299
        assert first.id not in claimed
        assert await two.finish([Succeeded(id=first.id, token=first.token)], now=at(3)) == [True]
        assert (await one.get(first.id)).state is TaskState.SUCCEEDED  # type: ignore[union-attr]
    finally:
        await one.close()
        await two.close()


async def test_a_waiting_store_wakes_for_commits_made_by_other_connections(
    store: SQLiteStore, db: Path
) -> None:
    # Its own commits (the 50 enqueues, a claim) never wake it: the wait runs its course.
    await store.enqueue_many([NewTask(kind="k") for _ in range(50)], now=BASE)
    assert await store.wait_for_work(0) is True  # the enqueues' own, in-process wake-up
    await store.claim(worker="w1", limit=50, now=at(1))
    started = anyio.current_time()
    assert await store.wait_for_work(0.3) is False
    assert anyio.current_time() - started >= 0.3

    # A plain INSERT from another connection (the CLI, another process) wakes it at once,
    # not after the caller's polling timeout.
    async def insert_elsewhere() -> None:
        await anyio.sleep(0.1)
        with sqlite3.connect(db) as conn:
            conn.execute("INSERT INTO gladd_tasks (kind, payload) VALUES ('k', '{}')")

    async with anyio.create_task_group() as tg:
        tg.start_soon(insert_elsewhere)
        started = anyio.current_time()
        assert await store.wait_for_work(30) is True
    assert anyio.current_time() - started < 2, "woken by the timeout, not by the commit"


async def test_an_application_may_enqueue_with_a_plain_insert(store: SQLiteStore, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO gladd_tasks (kind, payload) VALUES ('k', '{\"a\": 1}')")
    [task] = await store.claim(worker="w1", limit=5, now=datetime.now(UTC) + timedelta(seconds=1))
    assert (task.kind, task.payload, task.max_attempts, task.errors) == ("k", {"a": 1}, 5, ())
    assert abs(task.created_at - datetime.now(UTC)) < timedelta(seconds=10)


async def test_times_are_stored_as_utc_microseconds(store: SQLiteStore, db: Path) -> None:
    moment = BASE + timedelta(microseconds=123_456)
    task = await store.enqueue(NewTask(kind="k"), now=moment)
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT run_at FROM gladd_tasks WHERE id = ?", (task.id,)).fetchone()
    assert stored == (to_us(moment),)


def _plan(conn: sqlite3.Connection, sql: str, params: dict[str, object]) -> str:
    rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return "\n".join(row[-1] for row in rows)


async def test_claims_read_only_the_pending_index_among_many_finished_rows(
    store: SQLiteStore, db: Path
) -> None:
    finished = [
        ("old", "{}", "succeeded", 0, i, 1, 5, 1, "null", "[]", i, i, i) for i in range(200_000)
    ]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO gladd_tasks (kind, payload, state, priority, run_at, attempt, "
            "max_attempts, token, result, errors, created_at, updated_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            finished,
        )
        conn.execute("ANALYZE")
    await store.enqueue_many([NewTask(kind="k", priority=i % 3) for i in range(10)], now=BASE)

    params = {"worker": "w", "now": to_us(BASE), "at": "", "limit": 5, "kinds": '["k"]'}
    with sqlite3.connect(db) as conn:
        add_functions(conn)
        for sql in (Q["claim"], Q["claim_kinds"]):
            plan = _plan(conn, sql, params)
            assert "USING INDEX gladd_tasks_claim" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # the index order is the claim order
            assert "SCAN gladd_tasks\n" not in plan + "\n", plan

    claimed = await store.claim(worker="w", limit=5, now=BASE)
    assert [t.priority for t in claimed] == [2, 2, 2, 1, 1]
    assert {t.kind for t in claimed} == {"k"}


def test_every_query_returning_tasks_names_the_columns_in_the_order_rows_are_read() -> None:
    for name in ("running", "get", "list"):
        assert f"SELECT {COLUMNS} FROM" in " ".join(Q[name].split()), name
    for name in ("claim", "claim_kinds", "cancel", "retry"):
        assert f"RETURNING {COLUMNS}" in " ".join(Q[name].split()), name


async def test_two_stores_on_one_file_racing_to_advance_a_schedule_fire_each_tick_once(
    db: Path,
) -> None:
    """Two store objects on one file (two processes' worth: a connection and a thread each),
    four racers on each, advance the same schedule from the same tick, 50 times over: each
    time exactly one stores its task."""
    stores = [SQLiteStore(db), SQLiteStore(db)]
    racers, rounds = 8, 50
    for s in stores:
        await s.open()
    try:
        expected: datetime | None = None
        for round_ in range(rounds):
            tick = at(60 * round_)
            results = await _race([stores[i % 2] for i in range(racers)], since=expected, tick=tick)
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, f"round {round_}: {len(winners)} racers advanced the tick"
            expected = tick
        stored = await stores[1].list(limit=10 * rounds)
        assert len(stored) == rounds
        assert sorted(t.scheduled_for for t in stored) == [  # type: ignore[type-var]
            at(60 * r) for r in range(rounds)
        ]
        assert (await stores[0].schedule_states())["race"].last_tick == at(60 * (rounds - 1))
    finally:
        for s in stores:
            await s.close()


async def _race(
    racers: list[SQLiteStore], *, since: datetime | None, tick: datetime
) -> list[list[Enqueued] | None]:
    """What each racer's advance of schedule "race" from ``since`` to ``tick`` returned, all
    started at once."""
    results: list[list[Enqueued] | None] = [None] * len(racers)

    async def advance(i: int) -> None:
        task = NewTask(kind="tick", payload={"racer": i}, schedule="race", scheduled_for=tick)
        results[i] = await racers[i].advance_schedule(
            "race", spec="every minute", expected=since, to=tick, tasks=[task], now=tick
        )

    async with anyio.create_task_group() as tg:
        for i in range(len(racers)):
            tg.start_soon(advance, i)
    return results


async def test_an_enqueue_is_fsynced_at_its_commit_and_the_executor_writes_are_not(
    store: SQLiteStore,
) -> None:
    """A 201 means the task survives a power cut: the enqueue's commit runs with
    synchronous=FULL (SQLite fsyncs the WAL before COMMIT returns); a claim keeps NORMAL."""
    seen: list[tuple[str, int]] = []
    conn = store._conn
    assert conn is not None

    def trace(statement: str) -> None:
        if statement.startswith(("COMMIT", "BEGIN")):
            # The level in force for this statement, read on the same connection.
            seen.append((statement.split(maxsplit=1)[0], _synchronous_now[0]))
        elif statement.startswith("PRAGMA synchronous"):
            _synchronous_now[0] = {"FULL": 2, "NORMAL": 1}[statement.rsplit(maxsplit=1)[-1]]

    _synchronous_now = [conn.execute("PRAGMA synchronous").fetchone()[0]]
    assert _synchronous_now[0] == 1  # NORMAL between enqueues
    conn.set_trace_callback(trace)
    try:
        await store.enqueue(NewTask(kind="k"), now=BASE)
        enqueue_commits = [level for what, level in seen if what == "COMMIT"]
        seen.clear()
        await store.claim(worker="w1", limit=1, now=at(1))
        claim_commits = [level for what, level in seen if what == "COMMIT"]
    finally:
        conn.set_trace_callback(None)
    assert enqueue_commits == [2]
    assert claim_commits == [1]
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
