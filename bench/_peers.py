"""The peers of bench_executor.py and bench_producer.py: pgqueuer and procrastinate, each as
its docs set it up.

Each function gets the URL of a fresh, empty database of its own, installs the peer's schema
there the documented way (pgqueuer ``Queries.install``, procrastinate ``apply_schema``), and
runs the peer's own worker in this process at concurrency 10 with every other knob at its
default. Enqueueing always goes through a second connection (or a second App), like another
process would. The producers (bench_producer.py) run no worker: only the enqueue calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import procrastinate
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.domain.settings import DBSettings

CONCURRENCY = 10
DURABLE_POLL = 0.005  # seconds between checks that the last outcome is stored
START_TIMEOUT = 10.0  # one job must start within this long, or the latency run fails


class Mark:
    """What a latency handler writes: when it started, and an event to say so."""

    def __init__(self) -> None:
        self.at = 0.0
        self.event = asyncio.Event()

    def hit(self) -> None:
        self.at = time.perf_counter()
        self.event.set()


async def pickup_latencies(
    enqueue_one: Callable[[], Awaitable[object]], mark: Mark, m: int, warmup: int, settle: float
) -> list[float]:
    """Seconds from each enqueue's return to its handler's start, one job at a time.

    After each job has started, ``settle`` seconds pass so the worker is idle (outcome
    written, back to waiting) before the next enqueue. A negative value means the handler
    started before the enqueue call had returned.
    """
    out: list[float] = []
    for i in range(warmup + m):
        mark.event = asyncio.Event()
        await enqueue_one()
        sent = time.perf_counter()
        await asyncio.wait_for(mark.event.wait(), START_TIMEOUT)
        if i >= warmup:
            out.append(mark.at - sent)
        await asyncio.sleep(settle)
    return out


async def _stop(task: asyncio.Task[object], stop: Callable[[], None] | None = None) -> None:
    if stop is not None:
        stop()
    else:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)


# -- pgqueuer ------------------------------------------------------------------------------


async def _pgqueuer_setup(url: str) -> tuple[asyncpg.Connection, Queries, str]:
    producer = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(producer))
    await queries.install()
    return producer, queries, DBSettings().queue_table


async def pgqueuer_drain(url: str, n: int) -> float:
    """Tasks/s draining ``n`` no-op jobs: from the worker's start to the last job's row gone
    from the queue table (pgqueuer deletes a job when it logs it as successful)."""
    producer, queries, table = await _pgqueuer_setup(url)
    worker_conn = await asyncpg.connect(url)
    try:
        for start in range(0, n, 5000):
            size = min(5000, n - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
        done = 0
        all_ran = asyncio.Event()

        @qm.entrypoint("noop", concurrency_limit=CONCURRENCY)
        async def noop(job: Job) -> None:
            nonlocal done
            done += 1
            if done >= n:
                all_ran.set()

        started = time.perf_counter()
        runner = asyncio.create_task(qm.run())
        await asyncio.wait_for(all_ran.wait(), 600)
        while await producer.fetchval(f"SELECT count(*) FROM {table}"):  # noqa: ASYNC110
            await asyncio.sleep(DURABLE_POLL)
        elapsed = time.perf_counter() - started
        await _stop(runner, qm.shutdown.set)
        return n / elapsed
    finally:
        await worker_conn.close()
        await producer.close()


async def pgqueuer_latency(url: str, m: int, warmup: int, settle: float) -> list[float]:
    producer, queries, _ = await _pgqueuer_setup(url)
    worker_conn = await asyncpg.connect(url)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
        mark = Mark()

        @qm.entrypoint("mark", concurrency_limit=CONCURRENCY)
        async def on_mark(job: Job) -> None:
            mark.hit()

        runner = asyncio.create_task(qm.run())
        await asyncio.sleep(0.5)  # let it reach its idle wait
        try:
            return await pickup_latencies(
                lambda: queries.enqueue("mark", None), mark, m, warmup, settle
            )
        finally:
            await _stop(runner, qm.shutdown.set)
    finally:
        await worker_conn.close()
        await producer.close()


# -- procrastinate -------------------------------------------------------------------------


def _procrastinate_app(url: str) -> procrastinate.App:
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))


async def procrastinate_drain(url: str, n: int) -> float:
    """Tasks/s draining ``n`` no-op jobs: from the worker's start to the last job's status
    stored as ``succeeded``."""
    app = _procrastinate_app(url)
    done = 0
    all_ran = asyncio.Event()

    @app.task(name="noop")
    async def noop() -> None:
        nonlocal done
        done += 1
        if done >= n:
            all_ran.set()

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, n, 5000):
            await noop.batch_defer_async(*({} for _ in range(min(5000, n - start))))
        checker = await asyncpg.connect(url)
        try:
            started = time.perf_counter()
            worker = asyncio.create_task(
                app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=False)
            )
            await asyncio.wait_for(all_ran.wait(), 600)
            query = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
            while await checker.fetchval(query) < n:  # noqa: ASYNC110 - polls the table
                await asyncio.sleep(DURABLE_POLL)
            elapsed = time.perf_counter() - started
            await _stop(worker)
        finally:
            await checker.close()
    return n / elapsed


async def procrastinate_latency(url: str, m: int, warmup: int, settle: float) -> list[float]:
    app = _procrastinate_app(url)
    producer = _procrastinate_app(url)  # a second app, own pool: another process's view
    mark = Mark()

    @app.task(name="mark")
    async def on_mark() -> None:
        mark.hit()

    remote = producer.configure_task(name="mark")
    async with app.open_async(), producer.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=False)
        )
        await asyncio.sleep(0.5)
        try:
            return await pickup_latencies(remote.defer_async, mark, m, warmup, settle)
        finally:
            await _stop(worker)


# -- producers (bench_producer.py) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Producer:
    """A peer's enqueue calls, on their own connection: one job, and a batch of ``n``."""

    one: Callable[[], Awaitable[object]]
    batch: Callable[[int], Awaitable[object]]


@contextlib.asynccontextmanager
async def pgqueuer_producer(url: str) -> AsyncIterator[Producer]:
    """``Queries.enqueue`` with one entrypoint, and with lists (its ``UNNEST`` batch)."""
    producer, queries, _ = await _pgqueuer_setup(url)
    try:
        yield Producer(
            one=lambda: queries.enqueue("noop", None),
            batch=lambda n: queries.enqueue(["noop"] * n, [None] * n, [0] * n),
        )
    finally:
        await producer.close()


@contextlib.asynccontextmanager
async def procrastinate_producer(url: str) -> AsyncIterator[Producer]:
    """A task's ``defer_async``, and its ``batch_defer_async``."""
    app = _procrastinate_app(url)

    @app.task(name="noop")
    async def noop() -> None:
        pass

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        yield Producer(
            one=noop.defer_async,
            batch=lambda n: noop.batch_defer_async(*({} for _ in range(n))),
        )
