"""Gates across nodes and processes: many store objects claiming one gated kind at once
never run more than the gate allows, and every task runs exactly once; a pause made
through another store object on a SQLite file reaches the waiting one.

Each race records, per task, the narrowest interval it surely ran in (from the return of
the claim that started it to the call that finished it): more than the gate's concurrency
of those overlapping would prove the gate broken. After every claim the database's own
count of running tasks of the kind is read too.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest

from gladd.store import NewTask, Store, Succeeded, TaskState
from gladd.store.gates import Gate, Pause
from gladd.store.postgres.store import PostgresStore
from gladd.store.sqlite.store import SQLiteStore

pytestmark = pytest.mark.anyio

NOW = datetime(2030, 1, 1, tzinfo=UTC)
GATE = Gate(name="kind:race", kinds=("race",), concurrency=5)


@dataclass
class Race:
    """What the racers saw."""

    started: dict[int, float] = field(default_factory=dict)  # task id → claim returned
    finishing: dict[int, float] = field(default_factory=dict)  # task id → finish called
    claimed: list[int] = field(default_factory=list)  # every id every claim returned
    running: list[int] = field(default_factory=list)  # the database's count after each claim
    by_node: dict[int, int] = field(default_factory=dict)  # node → tasks it started

    def most_at_once(self) -> int:
        events = sorted(
            [(t, 1) for t in self.started.values()] + [(t, -1) for t in self.finishing.values()],
            key=lambda e: (e[0], e[1]),  # a finish before a start at the same instant
        )
        now = most = 0
        for _, step in events:
            now += step
            most = max(most, now)
        return most


async def race(nodes: list[Store], total: int, count_running: Callable[[], Awaitable[int]]) -> Race:
    seen = Race()
    done = anyio.Event()
    finished = 0

    async def run(node: Store, task_id: int, token: int) -> None:
        nonlocal finished
        await anyio.sleep(random.uniform(0, 0.004))
        seen.finishing[task_id] = time.monotonic()
        [held] = await node.finish([Succeeded(id=task_id, token=token)], now=NOW)
        assert held
        finished += 1
        if finished == total:
            done.set()

    async def claimer(i: int, node: Store) -> None:
        async with anyio.create_task_group() as tasks:
            while not done.is_set():
                claim = await node.claim_gated(
                    worker=f"node{i}", limit=3, now=NOW, kinds=["race"], gates=[GATE]
                )
                returned = time.monotonic()
                seen.running.append(await count_running())
                for task in claim.tasks:
                    seen.started[task.id] = returned
                    seen.claimed.append(task.id)
                    seen.by_node[i] = seen.by_node.get(i, 0) + 1
                    tasks.start_soon(run, node, task.id, task.token)
                if not claim.tasks:
                    await anyio.sleep(random.uniform(0, 0.002))

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for i, node in enumerate(nodes):
                tg.start_soon(claimer, i, node)
    return seen


async def assert_fair(nodes: list[Store], seen: Race, total: int) -> None:
    assert sorted(seen.claimed) == sorted(set(seen.claimed)), "a task was started twice"
    assert len(seen.claimed) == total
    assert max(seen.running) <= GATE.concurrency
    assert seen.most_at_once() <= GATE.concurrency
    assert len(seen.by_node) > 1, "one node did all the work: no race was run"
    counts = await nodes[0].counts()
    assert counts[TaskState.SUCCEEDED] == total
    tasks = await nodes[0].list(limit=total)
    assert {t.attempt for t in tasks} == {1}


# -- PostgreSQL -----------------------------------------------------------------------------


@asynccontextmanager
async def fresh_database(postgres_url: str) -> AsyncIterator[str]:
    name = f"gladd_flow_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.mark.postgres
async def test_eight_nodes_never_run_more_than_a_gate_allows(postgres_url: str) -> None:
    """Eight nodes (a pool each) claim 300 tasks of a kind gated at 5, finishing each after
    a few random milliseconds."""
    total = 300
    async with fresh_database(postgres_url) as url, AsyncExitStack() as stack:
        nodes: list[Store] = []
        for _ in range(8):
            node = PostgresStore(url, pool_max_size=3)
            await node.open()
            stack.push_async_callback(node.close)
            nodes.append(node)
        await nodes[0].enqueue_many([NewTask(kind="race") for _ in range(total)], now=NOW)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        stack.push_async_callback(pool.close)

        async def count_running() -> int:
            query = "SELECT count(*) FROM gladd_tasks WHERE kind = 'race' AND state = 'running'"
            return int(await pool.fetchval(query))

        seen = await race(nodes, total, count_running)
        await assert_fair(nodes, seen, total)


async def epoch_moves(store: Store, since: int, within: float) -> float:
    """Seconds until ``store.pause_epoch`` moves from ``since`` (fails after ``within``)."""
    started = time.monotonic()
    with anyio.fail_after(within):
        while store.pause_epoch == since:
            await anyio.sleep(0.005)
    return time.monotonic() - started


@pytest.mark.postgres
async def test_a_pause_on_one_node_moves_every_nodes_epoch(postgres_url: str) -> None:
    paused = Pause(target="kind:sync", reason="r", until=None, by="api:10.0.0.1", created_at=NOW)
    async with fresh_database(postgres_url) as url, AsyncExitStack() as stack:
        a, b = PostgresStore(url), PostgresStore(url)
        for store in (a, b):
            await store.open()
            stack.push_async_callback(store.close)
        epoch = a.pause_epoch
        await b.pause(paused)
        assert await epoch_moves(a, epoch, within=2) < 1
        assert await a.pauses(now=NOW) == [paused]
        assert await a.wait_for_work(0)  # and its waiters were woken to look
        epoch = a.pause_epoch
        assert await b.resume("kind:sync", now=NOW) == paused
        assert await epoch_moves(a, epoch, within=2) < 1
        # A lost listener may have missed some: once back, the epoch moves too.
        epoch = a.pause_epoch
        conn = await asyncpg.connect(url)
        stack.push_async_callback(conn.close)
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
        )
        assert killed == 2
        await epoch_moves(a, epoch, within=8)


# -- SQLite ---------------------------------------------------------------------------------


async def test_two_store_objects_on_one_sqlite_file_never_run_more_than_a_gate_allows(
    tmp_path: Path,
) -> None:
    total = 150
    path = tmp_path / "tasks.db"
    async with AsyncExitStack() as stack:
        nodes: list[Store] = []
        for _ in range(2):
            node = SQLiteStore(path)
            await node.open()
            stack.push_async_callback(node.close)
            nodes.append(node)
        await nodes[0].enqueue_many([NewTask(kind="race") for _ in range(total)], now=NOW)
        checker = SQLiteStore(path)
        await checker.open()
        stack.push_async_callback(checker.close)

        async def count_running() -> int:
            return (await checker.counts())[TaskState.RUNNING]  # only the race's kind here

        seen = await race(nodes, total, count_running)
        await assert_fair(nodes, seen, total)


async def test_a_pause_through_another_sqlite_store_moves_the_waiting_ones_epoch(
    tmp_path: Path,
) -> None:
    """The CLI's store pausing a kind: the daemon's store, waiting for work, hears the
    doorbell at once, and its epoch tells its reader to re-read the pauses."""
    path = tmp_path / "tasks.db"
    async with AsyncExitStack() as stack:
        daemon, cli = SQLiteStore(path), SQLiteStore(path)
        for store in (daemon, cli):
            await store.open()
            stack.push_async_callback(store.close)
        epoch = daemon.pause_epoch
        woke: list[bool] = []

        async def wait() -> None:
            woke.append(await daemon.wait_for_work(10))

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)  # the daemon's store holds the bell now
            paused = Pause(
                target="kind:sync", reason="deploy", until=None, by="cli:ops@host", created_at=NOW
            )
            await cli.pause(paused)
        assert woke == [True]
        assert time.monotonic() - started < 2, "woke by timeout, not by the doorbell"
        assert daemon.pause_epoch != epoch
        assert await daemon.pauses(now=NOW) == [paused]
        # A busy daemon's store, not waiting for work: its next claim notices.
        epoch = daemon.pause_epoch
        assert await cli.resume("kind:sync", now=NOW) == paused
        await daemon.claim(worker="w1", limit=1, now=NOW)
        assert daemon.pause_epoch != epoch
        assert await daemon.pauses(now=NOW) == []
        epoch = daemon.pause_epoch
        await cli.pause(paused)
        await daemon.claim_gated(worker="w1", limit=1, now=NOW, kinds=["race"], gates=[GATE])
        assert daemon.pause_epoch != epoch
