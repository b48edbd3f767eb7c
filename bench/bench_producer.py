"""Producing tasks, side by side with pgqueuer and procrastinate, on this machine.

Run: ``.venv/bin/python bench/bench_producer.py [--n 3000] [--rounds 7] [--seconds 5]``
(``--parts single,batch,http`` runs a subset). The PostgreSQL server comes from
GLADD_TEST_DATABASE_URL; every contender gets a fresh database of its own, dropped
afterwards; gladd's SQLite runs (for information) use a temp file.

1. Single enqueues from one caller, one after the other, ``--n`` of them (after a warm-up):
   gladd's Python API (``gladd.Client(url).enqueue("gladd.noop")``), pgqueuer
   (``Queries.enqueue`` of one job over an asyncpg connection) and procrastinate (a task's
   ``defer_async``), each set up as its docs say (``_peers.py``). Tasks/s and the p50/p99
   of one call. Target: gladd on PostgreSQL ≥ 2x the faster peer. For scale, the floor:
   a bare autocommitted ``INSERT ... RETURNING id`` into a one-column table.
2. A batch of 1,000, ``--rounds`` times: ``Client.enqueue_many`` against pgqueuer's
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
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg

import gladd
from gladd.store.factory import store_from_url

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


CONTENDERS: dict[str, Contender] = {
    "gladd postgresql": lambda: gladd_producer("postgresql"),
    "gladd sqlite": lambda: gladd_producer("sqlite"),
    "pgqueuer": _on_postgres(_peers.pgqueuer_producer),
    "procrastinate": _on_postgres(_peers.procrastinate_producer),
}
PEERS = ("pgqueuer", "procrastinate")


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


async def _no_batch(n: int) -> None:
    raise NotImplementedError


async def single_calls(one: Callable[[], Awaitable[object]], n: int) -> tuple[float, list[float]]:
    """Tasks/s of ``n`` calls one after the other, and each call's seconds."""
    for _ in range(WARMUP):
        await one()
    took: list[float] = []
    started = time.perf_counter()
    for _ in range(n):
        sent = time.perf_counter()
        await one()
        took.append(time.perf_counter() - sent)
    return n / (time.perf_counter() - started), took


async def batch_rounds(batch: Callable[[int], Awaitable[object]], rounds: int) -> list[float]:
    """Tasks/s of each of ``rounds`` batches of :data:`BATCH` (one warm-up batch first)."""
    await batch(BATCH)
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        await batch(BATCH)
        rates.append(BATCH / (time.perf_counter() - started))
    return rates


async def single(rep: Report, n: int) -> None:
    rates: dict[str, float] = {}
    for name, contender in CONTENDERS.items():
        async with contender() as producer:
            rate, took = await single_calls(producer.one, n)
        rates[name] = rate
        ms = f"p50 {_pct(took, 0.5) * 1e3:.2f} / p99 {_pct(took, 0.99) * 1e3:.2f} ms"
        rep.add(f"single enqueue, {name}", f"{_rate(rate)} {ms}")
    async with bare_insert() as floor:
        rate, took = await single_calls(floor.one, n)
    ms = f"p50 {_pct(took, 0.5) * 1e3:.2f} / p99 {_pct(took, 0.99) * 1e3:.2f} ms"
    rep.add("single enqueue, floor: a bare INSERT", f"{_rate(rate)} {ms}")
    best = max(PEERS, key=rates.__getitem__)
    factor = rates["gladd postgresql"] / rates[best]
    rep.add(
        "single enqueue: gladd postgresql / faster peer",
        f"{factor:.2f}x ({best})",
        f"≥ {SINGLE_FACTOR:g}x",
    )
    rep.verdict(factor >= SINGLE_FACTOR)


async def batch(rep: Report, rounds: int) -> None:
    medians: dict[str, float] = {}
    for name, contender in CONTENDERS.items():
        async with contender() as producer:
            rates = await batch_rounds(producer.batch, rounds)
        medians[name] = statistics.median(rates)
        figures = f"{_rate(medians[name])} (best {max(rates):,.0f})"
        rep.add(f"batch of {BATCH:,}, {name}, median", figures)
    best = max(PEERS, key=medians.__getitem__)
    factor = medians["gladd postgresql"] / medians[best]
    rep.add(
        f"batch of {BATCH:,}: gladd postgresql / faster peer", f"{factor:.2f}x ({best})", "≥ 1x"
    )
    rep.verdict(factor >= 1.0)


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
    parser.add_argument("--rounds", type=int, default=7, help="batches per contender")
    parser.add_argument("--seconds", type=float, default=5.0, help="per HTTP measurement")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    rep = Report()
    print(asyncio.run(machine()))
    if "single" in parts:
        asyncio.run(single(rep, args.n))
    if "batch" in parts:
        asyncio.run(batch(rep, args.rounds))
    if "http" in parts:
        bench_http_enqueue.measure_both(rep, args.seconds, args.clients)
    print()
    print(rep.table())
    if rep.missed:
        print(f"MISSED: {'; '.join(rep.missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
