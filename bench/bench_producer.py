"""Producing tasks, side by side with pgqueuer and procrastinate, on this machine.

Run: ``.venv/bin/python bench/bench_producer.py [--n 3000] [--rounds 7] [--seconds 5]``
(``--parts single,batch,http`` runs a subset). The PostgreSQL server comes from
GLADD_TEST_DATABASE_URL; every contender gets a fresh database of its own, dropped
afterwards; gladd's SQLite runs (for information) use a temp file.

Every contender of a part is open at once and they take turns, ``--rounds`` turns each:
on a machine whose load drifts (other work, PostgreSQL's own) each gets its share of the
quiet and the busy moments, and the median turn counts.

1. Single enqueues from one caller, one after the other, ``--n`` of them (after a warm-up):
   gladd's Python API (``gladd.Client(url).enqueue("gladd.noop")``), pgqueuer
   (``Queries.enqueue`` of one job over an asyncpg connection) and procrastinate (a task's
   ``defer_async``), each set up as its docs say (``_peers.py``). Tasks/s and the p50/p99
   of one call. Target: gladd on PostgreSQL ≥ 2x the faster peer. For scale, two floors:
   a bare autocommitted ``INSERT ... RETURNING id`` into a one-column table, and gladd's
   own single-task statement into ``gladd_tasks`` on a bare connection.
2. A batch of 1,000 per turn: ``Client.enqueue_many`` against pgqueuer's
   ``Queries.enqueue`` with lists (its ``UNNEST`` insert) and procrastinate's
   ``batch_defer_async``. Best and median tasks/s; target: gladd's median ≥ the faster
   peer's median.
3. ``POST /tasks`` into a real ``gladd run`` (``bench_http_enqueue.py``): one client, then
   20 concurrent keep-alive clients. Target: 20 clients ≥ 4x one, on each store.

Every figure counts committed tasks only: each call returns after its commit. Exits 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

import gladd
from gladd.store.factory import store_from_url
from gladd.store.postgres.queries import Q

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers
import bench_http_enqueue
from bench_executor import SERVER, Report, _pct, _rate, fresh_database, gladd_url

SINGLE_FACTOR = 2.0
BATCH = 1000
WARMUP = 200
PARTS = ("single", "batch", "http")


@contextlib.asynccontextmanager
async def gladd_producer(backend: str) -> AsyncIterator[_peers.Producer]:
    """A ``gladd.Client`` on a fresh store (created first, as ``gladd db migrate`` would)."""
    async with gladd_url(backend) as url:
        store = store_from_url(url)
        await store.open()
        await store.close()
        policies = Path(tempfile.mkdtemp(prefix="gladd_bench_")) / "policies.toml"
        policies.write_text("")  # defaults: gladd.noop needs nothing
        async with gladd.Client(url, policies=policies) as client:
            batch = [{"kind": "gladd.noop"}] * BATCH
            yield _peers.Producer(
                one=lambda: client.enqueue("gladd.noop"),
                batch=lambda n: client.enqueue_many(batch[:n]),
            )


Contender = Callable[[], contextlib.AbstractAsyncContextManager[_peers.Producer]]


def _on_postgres(
    peer: Callable[[str], contextlib.AbstractAsyncContextManager[_peers.Producer]],
) -> Contender:
    @contextlib.asynccontextmanager
    async def contender() -> AsyncIterator[_peers.Producer]:
        async with fresh_database() as url, peer(url) as producer:
            yield producer

    return contender


PEERS = ("pgqueuer", "procrastinate")
FLOOR = "floor: a bare INSERT"
TABLE_FLOOR = "floor: gladd's INSERT, bare"


@contextlib.asynccontextmanager
async def bare_insert() -> AsyncIterator[_peers.Producer]:
    """The floor under every PostgreSQL contender: one autocommitted ``INSERT ... RETURNING
    id`` into a table of one serial column, over one asyncpg connection."""
    async with fresh_database() as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE floor (id bigserial PRIMARY KEY)")
            insert = "INSERT INTO floor DEFAULT VALUES RETURNING id"
            yield _peers.Producer(one=lambda: conn.fetchval(insert), batch=_no_batch)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def bare_gladd_insert() -> AsyncIterator[_peers.Producer]:
    """The floor under gladd's own single enqueue: its statement (``enqueue_one``) into
    ``gladd_tasks`` with the table's indexes and notify trigger, over one asyncpg
    connection, with none of gladd's Python around it."""
    async with fresh_database() as url:
        store = store_from_url(url)
        await store.open()
        await store.close()
        conn = await asyncpg.connect(url)
        try:
            now = datetime.now(UTC)
            args = (now, "gladd.noop", "{}", 0, now, 1, None, None, None, None, None)
            insert = Q["enqueue_one"]
            yield _peers.Producer(one=lambda: conn.fetchval(insert, *args), batch=_no_batch)
        finally:
            await conn.close()


async def _no_batch(n: int) -> None:
    raise NotImplementedError


CONTENDERS: dict[str, Contender] = {
    "gladd postgresql": lambda: gladd_producer("postgresql"),
    "gladd sqlite": lambda: gladd_producer("sqlite"),
    "pgqueuer": _on_postgres(_peers.pgqueuer_producer),
    "procrastinate": _on_postgres(_peers.procrastinate_producer),
    FLOOR: bare_insert,
    TABLE_FLOOR: bare_gladd_insert,
}
SINGLE = tuple(CONTENDERS)
BATCHING = tuple(name for name in CONTENDERS if name not in (FLOOR, TABLE_FLOOR))


@contextlib.asynccontextmanager
async def all_open(names: Iterable[str]) -> AsyncIterator[dict[str, _peers.Producer]]:
    """Every contender named, open at once (each on its own database), so their rounds can
    take turns: a machine that gets busier half-way through slows them all alike."""
    async with contextlib.AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(CONTENDERS[name]()) for name in names}


async def single_round(one: Callable[[], Awaitable[object]], n: int) -> tuple[float, list[float]]:
    """Tasks/s of ``n`` calls one after the other, and each call's seconds."""
    took: list[float] = []
    started = time.perf_counter()
    for _ in range(n):
        sent = time.perf_counter()
        await one()
        took.append(time.perf_counter() - sent)
    return n / (time.perf_counter() - started), took


async def batch_round(batch: Callable[[int], Awaitable[object]]) -> float:
    """Tasks/s of one batch of :data:`BATCH`."""
    started = time.perf_counter()
    await batch(BATCH)
    return BATCH / (time.perf_counter() - started)


def _ratio_row(rep: Report, what: str, figures: dict[str, float], factor: float) -> None:
    best = max(PEERS, key=figures.__getitem__)
    ratio = figures["gladd postgresql"] / figures[best]
    rep.add(f"{what}: gladd postgresql / faster peer", f"{ratio:.2f}x ({best})", f"≥ {factor:g}x")
    rep.verdict(ratio >= factor)


async def single(rep: Report, n: int, rounds: int) -> None:
    """``rounds`` turns, each contender ``n // rounds`` calls a turn; the median turn's
    rate counts, and the p50/p99 of every call."""
    rates: dict[str, list[float]] = {name: [] for name in SINGLE}
    took: dict[str, list[float]] = {name: [] for name in SINGLE}
    async with all_open(SINGLE) as producers:
        for producer in producers.values():
            await single_round(producer.one, WARMUP)
        for _ in range(rounds):
            for name, producer in producers.items():
                rate, calls = await single_round(producer.one, n // rounds)
                rates[name].append(rate)
                took[name] += calls
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name in SINGLE:
        ms = f"p50 {_pct(took[name], 0.5) * 1e3:.2f} / p99 {_pct(took[name], 0.99) * 1e3:.2f} ms"
        rep.add(f"single enqueue, {name}", f"{_rate(medians[name])} {ms}")
    _ratio_row(rep, "single enqueue", medians, SINGLE_FACTOR)


async def batch(rep: Report, rounds: int) -> None:
    """``rounds`` turns of one batch each (after one to warm up); median and best."""
    rates: dict[str, list[float]] = {name: [] for name in BATCHING}
    async with all_open(BATCHING) as producers:
        for producer in producers.values():
            await batch_round(producer.batch)
        for _ in range(rounds):
            for name, producer in producers.items():
                rates[name].append(await batch_round(producer.batch))
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name in BATCHING:
        figures = f"{_rate(medians[name])} (best {max(rates[name]):,.0f})"
        rep.add(f"batch of {BATCH:,}, {name}, median", figures)
    _ratio_row(rep, f"batch of {BATCH:,}", medians, 1.0)


async def machine() -> str:
    conn = await asyncpg.connect(SERVER)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {version} "
        f"(client and server on this machine)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="single enqueues per contender")
    parser.add_argument("--rounds", type=int, default=7, help="turns per contender")
    parser.add_argument("--seconds", type=float, default=5.0, help="per HTTP measurement")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    rep = Report()
    print(asyncio.run(machine()))
    if "single" in parts:
        asyncio.run(single(rep, args.n, args.rounds))
    if "batch" in parts:
        asyncio.run(batch(rep, args.rounds))
    if "http" in parts:
        bench_http_enqueue.measure_both(rep, args.seconds, args.clients)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
