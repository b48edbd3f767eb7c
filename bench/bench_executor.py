"""The executor end to end, side by side with pgqueuer and procrastinate, on this machine.

Run: ``.venv/bin/python bench/bench_executor.py [--n 20000] [--m 500] [--repeat 3] [--no-big]``
(``--parts`` picks a subset: drain, best, peers, latency, big, daemon). Each drain runs
``--repeat`` times and the best counts (procrastinate, the slowest by far, runs once). The
PostgreSQL server comes from GLADD_TEST_DATABASE_URL (default: local ``postgres``); every
PostgreSQL run gets a fresh database ``gladd_bench_<hex>``, dropped afterwards; SQLite runs
use a temp file.

1. Drain: N no-op tasks enqueued (untimed), then a real Executor started; timed from its
   start until ``executor.statistics().succeeded`` reaches N (every outcome stored). SQLite and
   PostgreSQL at concurrency 10, and at ``--best`` concurrencies (reported separately).
2. Peers, same N from PostgreSQL at concurrency 10, defaults otherwise: pgqueuer
   (QueueManager over an asyncpg connection, entrypoint ``concurrency_limit=10``, batch size
   at its default) and procrastinate (App + PsycopgConnector, worker ``concurrency=10``).
3. Idle pickup latency: one task at a time into an idle worker, from the enqueue call's
   return to the handler's first line. gladd-SQLite enqueues through the executor's own
   store (in-process wake-up); gladd-PostgreSQL and the peers through a second connection,
   so LISTEN/NOTIFY carries the wake-up. One more row feeds gladd-SQLite through a second
   store, as the CLI or another process feeds it: its enqueues ring the waiting store's
   doorbell.
4. Big table (``--big``, default on): the drain again behind 1,000,000 succeeded rows.
5. An idle ``gladd run`` daemon: RSS after 10 s, CPU over the next 10 s.

Exits 1 when a target is missed (see TARGETS in the printed table).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import httpx
from loguru import logger

from gladd import tracing
from gladd.executor.decide import new_task
from gladd.executor.kinds import KindRegistry, RegisteredKind, TaskContext, builtin_kinds
from gladd.executor.runner import Executor
from gladd.policies import Policies, parse_policies
from gladd.store import Store, TaskState
from gladd.store.factory import store_from_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers

T = TypeVar("T")

SERVER = os.environ.get("GLADD_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
BIG_ROWS = 1_000_000
ENQUEUE_CHUNK = 5000
POLL = 0.005  # seconds between checks of executor.statistics() during a drain
WARMUP = 20  # latency samples discarded at the start of each run
SETTLE = 0.010  # seconds after a latency job starts before the next enqueue (worker idle)
IDLE_WARM = 10.0
IDLE_WINDOW = 10.0

# Targets
PEER_FACTOR = 2.0
P99_MS = 4.0
BIG_TOLERANCE = 0.15
RSS_MB = 80.0
IDLE_CPU_PCT = 1.0

PARTS = ("drain", "best", "peers", "latency", "big", "daemon")


# -- helpers ---------------------------------------------------------------------------------


def policies_for(concurrency: int) -> Policies:
    text = f"[executor]\nconcurrency = {concurrency}\n".encode()
    return parse_policies(text, source="bench").policies


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    name = f"gladd_bench_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(SERVER)._replace(path=f"/{name}"))
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def gladd_url(backend: str) -> AsyncIterator[str]:
    if backend == "postgresql":
        async with fresh_database() as url:
            yield url
        return
    folder = tempfile.mkdtemp(prefix="gladd_bench_")
    try:
        yield f"sqlite:///{folder}/gladd.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def run_fill(
    url: str,
    sqlite: Callable[[sqlite3.Connection], None],
    postgres: Callable[[asyncpg.Connection], Awaitable[None]],
) -> None:
    """Fill a store's tables with plain SQL, then analyze them as autovacuum soon would:
    ``sqlite`` runs in one transaction on a connection of its own (in a thread),
    ``postgres`` on a fresh connection. The benches with a million rows share it."""
    if url.startswith("sqlite"):

        def insert() -> None:
            conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
            try:
                with conn:
                    sqlite(conn)
                conn.execute("ANALYZE")
            finally:
                conn.close()

        await anyio.to_thread.run_sync(insert)
        return
    conn = await asyncpg.connect(url)
    try:
        await postgres(conn)
        await conn.execute("VACUUM ANALYZE gladd_tasks")
    finally:
        await conn.close()


async def fill_finished(url: str, rows: int) -> None:
    """``rows`` succeeded tasks, inserted with one SQL statement."""
    now_us = int(time.time() * 1_000_000)

    def on_sqlite(conn: sqlite3.Connection) -> None:
        conn.execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s"
            " WHERE i < :rows) INSERT INTO gladd_tasks (kind, state, attempt,"
            " max_attempts, token, result, run_at, created_at, updated_at,"
            " finished_at) SELECT 'gladd.noop', 'succeeded', 1, 1, 1, 'null',"
            " :now, :now, :now, :now FROM s",
            {"rows": rows, "now": now_us},
        )

    async def on_postgres(conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO gladd_tasks (kind, state, attempt, max_attempts, token, result,"
            " finished_at) SELECT 'gladd.noop', 'succeeded', 1, 1, 1, 'null'::jsonb, now()"
            " FROM generate_series(1, $1)",
            rows,
        )

    await run_fill(url, on_sqlite, on_postgres)


async def _analyze(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE gladd_tasks")
    finally:
        await conn.close()


async def enqueue_noops(store: Store, policies: Policies, n: int) -> None:
    now = datetime.now(UTC)
    for start in range(0, n, ENQUEUE_CHUNK):
        size = min(ENQUEUE_CHUNK, n - start)
        batch = [new_task(policies, kind="gladd.noop", payload={}, run_at=now) for _ in range(size)]
        await store.enqueue_many(batch, now=now)


# -- gladd -----------------------------------------------------------------------------------


async def gladd_drain(
    backend: str, n: int, concurrency: int, *, big: int = 0, analyze: bool = False
) -> float:
    policies = policies_for(concurrency)
    async with gladd_url(backend) as url:
        store = store_from_url(url)
        await store.open()
        try:
            if big:
                await fill_finished(url, big)
            await enqueue_noops(store, policies, n)
            if analyze:
                await _analyze(url)
            executor = Executor(
                store=store,
                kinds=KindRegistry(builtin_kinds()),
                policies=lambda: policies,
                worker_id=f"bench-{secrets.token_hex(3)}",
            )
            async with anyio.create_task_group() as tg:
                started = time.perf_counter()
                await tg.start(executor.run)
                with anyio.fail_after(600):
                    while executor.statistics().succeeded < n:  # noqa: ASYNC110 - polls a counter
                        await anyio.sleep(POLL)
                elapsed = time.perf_counter() - started
                executor.stop()
            counts = await store.counts()
            assert counts.get(TaskState.SUCCEEDED, 0) == n + big, counts
            assert executor.statistics().failed == 0, executor.statistics()
        finally:
            await store.close()
    return n / elapsed


async def gladd_latency(backend: str, m: int, *, elsewhere: bool = False) -> list[float]:
    policies = policies_for(10)
    mark = _peers.Mark()

    async def on_mark(ctx: TaskContext, payload: object) -> None:
        mark.hit()

    kinds = KindRegistry([*builtin_kinds(), RegisteredKind(name="bench.mark", handler=on_mark)])
    async with gladd_url(backend) as url:
        store = store_from_url(url)
        await store.open()
        # SQLite: the executor's own store (the in-process wake applies), or with
        # ``elsewhere`` a second connection, as the CLI or another process would enqueue.
        # PostgreSQL: always a second store, so LISTEN/NOTIFY carries the wake-up.
        producer = store if backend == "sqlite" and not elsewhere else store_from_url(url)
        if producer is not store:
            await producer.open()
        try:
            executor = Executor(
                store=store, kinds=kinds, policies=lambda: policies, worker_id="bench-latency"
            )

            async def enqueue_one() -> None:
                now = datetime.now(UTC)
                spec = new_task(policies, kind="bench.mark", payload={}, run_at=now)
                await producer.enqueue(spec, now=now)

            async with anyio.create_task_group() as tg:
                await tg.start(executor.run)
                await anyio.sleep(0.5)
                try:
                    return await _peers.pickup_latencies(enqueue_one, mark, m, WARMUP, SETTLE)
                finally:
                    executor.stop()
        finally:
            if producer is not store:
                await producer.close()
            await store.close()


# -- the idle daemon -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, the graceful stop; SIGKILL after 30 s without one."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def idle_daemon() -> tuple[float, float]:
    """(RSS MB after IDLE_WARM s, CPU % of one core over the next IDLE_WINDOW s)."""
    gladd = ROOT / ".venv" / "bin" / "gladd"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    with tempfile.TemporaryDirectory(prefix="gladd_bench_") as state:
        log = Path(state) / "daemon.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    str(gladd),
                    "run",
                    "--state-dir",
                    state,
                    "--admin-port",
                    str(port),
                    "--policies",
                    str(ROOT / "policies.toml"),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=state,
            )
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"gladd run exited {proc.returncode}: {log.read_text()}")
                with contextlib.suppress(httpx.HTTPError):
                    ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1)
                    if ready.status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gladd never got ready: {log.read_text()[-2000:]}")
                time.sleep(0.1)
            time.sleep(IDLE_WARM)
            rss = _rss_mb(proc.pid)
            before = _cpu_seconds(proc.pid)
            time.sleep(IDLE_WINDOW)
            cpu = (_cpu_seconds(proc.pid) - before) / IDLE_WINDOW * 100
            rss = max(rss, _rss_mb(proc.pid))
        finally:
            stop_process(proc)
    return rss, cpu


# -- report ----------------------------------------------------------------------------------


@dataclass
class Report:
    rows: list[list[str]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def add(self, what: str, value: str, target: str = "") -> None:
        self.rows.append([what, value, target, ""])
        if not target:
            print(f"  {what:<44} {value:>18}", flush=True)

    def verdict(self, ok: bool) -> None:
        """The ✓/✗ of the last row added, which has a target."""
        row = self.rows[-1]
        row[3] = "✓" if ok else "✗"
        if not ok:
            self.missed.append(row[0])
        print(f"  {row[0]:<44} {row[1]:>18}  {row[2]} {row[3]}", flush=True)

    def finish(self, started: float | None = None) -> int:
        """Print the table (and the wall time since ``started``), then the misses; the
        script's exit code: 1 if a target was missed."""
        print()
        print(self.table())
        if started is not None:
            print(f"\nwall time {time.perf_counter() - started:.0f}s")
        if self.missed:
            print("MISSED: " + "; ".join(self.missed))
            return 1
        print("all targets met")
        return 0

    def table(self) -> str:
        width = max(len(r[0]) for r in self.rows)
        lines = [f"{'measure':<{width}}  {'value':>18}  {'target':<26}", "-" * (width + 50)]
        lines += [f"{w:<{width}}  {v:>18}  {t:<26} {m}".rstrip() for w, v, t, m in self.rows]
        return "\n".join(lines)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _rate(value: float) -> str:
    return f"{value:,.0f} /s"


async def _timed(label: str, fn: Callable[[], Awaitable[T]]) -> T:
    print(f"… {label}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = await fn()
    print(f"  ({time.perf_counter() - started:.1f}s)", file=sys.stderr, flush=True)
    return result


async def _best(label: str, repeat: int, fn: Callable[[], Awaitable[float]]) -> float:
    """The best rate of ``repeat`` runs: noise on a shared 2-core box only ever slows."""
    rates = []
    for i in range(repeat):
        rates.append(await _timed(f"{label} [{i + 1}/{repeat}]", fn))
        print(f"    {rates[-1]:,.0f} /s", file=sys.stderr, flush=True)
    return max(rates)


@dataclass
class Bench:
    n: int
    m: int
    repeat: int
    rep: Report = field(default_factory=Report)
    rates: dict[str, float] = field(default_factory=dict)

    async def c10(self, backend: str) -> float:
        """gladd's concurrency-10 drain on ``backend``, measured once per run."""
        if backend not in self.rates:
            self.rates[backend] = await _best(
                f"drain gladd-{backend} c10", self.repeat, lambda: gladd_drain(backend, self.n, 10)
            )
        return self.rates[backend]

    async def drain(self) -> None:
        for backend in BACKENDS:
            self.rep.add(f"drain gladd-{backend} c10", _rate(await self.c10(backend)))
        analyzed = await _best(
            "drain gladd-postgresql c10, ANALYZE after enqueue",
            self.repeat,
            lambda: gladd_drain("postgresql", self.n, 10, analyze=True),
        )
        self.rates["analyzed"] = analyzed
        self.rep.add("  same, ANALYZE after enqueue (info)", _rate(analyzed))
        sqlite, postgres = self.rates["sqlite"], self.rates["postgresql"]
        self.rep.add("gladd-sqlite / gladd-postgresql c10", f"{sqlite / postgres:.2f}x", "≥ 1x")
        self.rep.verdict(sqlite >= postgres)

    async def best(self, concurrencies: list[int]) -> None:
        for backend in BACKENDS:
            best = (0.0, 0)
            for c in concurrencies:
                rate = await _timed(
                    f"drain gladd-{backend} c{c}",
                    lambda backend=backend, c=c: gladd_drain(backend, self.n, c),
                )
                print(f"    c{c}: {rate:,.0f} /s", file=sys.stderr)
                best = max(best, (rate, c))
            self.rep.add(f"drain gladd-{backend} best (c{best[1]})", _rate(best[0]))

    async def peers(self) -> None:
        for name, peer_drain in PEER_DRAINS.items():

            async def peer(
                peer_drain: Callable[[str, int], Awaitable[float]] = peer_drain,
            ) -> float:
                async with fresh_database() as url:
                    return await peer_drain(url, self.n)

            # procrastinate is several times slower than anything else here: one run.
            repeat = 1 if name == "procrastinate" else self.repeat
            self.rates[name] = await _best(f"drain {name} c10", repeat, peer)
            self.rep.add(f"drain {name} c10", _rate(self.rates[name]))
        fastest = max(PEER_DRAINS, key=self.rates.__getitem__)
        ratio = await self.c10("postgresql") / self.rates[fastest]
        self.rep.add(
            "gladd-postgresql c10 / fastest peer",
            f"{ratio:.2f}x",
            f"≥ {PEER_FACTOR:g}x ({fastest})",
        )
        self.rep.verdict(ratio >= PEER_FACTOR)

    async def latency(self) -> None:
        for backend in BACKENDS:
            samples = await _timed(
                f"pickup gladd-{backend}", lambda backend=backend: gladd_latency(backend, self.m)
            )
            p99 = self._latency_row(f"gladd-{backend}", samples, f"p99 ≤ {P99_MS:g} ms")
            self.rep.verdict(p99 <= P99_MS)
        # SQLite fed through a second store, as the CLI or another process feeds it: the
        # enqueuing store rings the waiting one's doorbell.
        samples = await _timed(
            "pickup gladd-sqlite, other store",
            lambda: gladd_latency("sqlite", self.m, elsewhere=True),
        )
        p99 = self._latency_row("gladd-sqlite, other store", samples, f"p99 ≤ {P99_MS:g} ms")
        self.rep.verdict(p99 <= P99_MS)
        for name, peer_latency in PEER_LATENCIES.items():

            async def peer(
                peer_latency: Callable[..., Awaitable[list[float]]] = peer_latency,
            ) -> list[float]:
                async with fresh_database() as url:
                    return await peer_latency(url, self.m, WARMUP, SETTLE)

            self._latency_row(name, await _timed(f"pickup {name}", peer), "")

    def _latency_row(self, name: str, samples: list[float], target: str) -> float:
        early = sum(s < 0 for s in samples)
        ms = [max(0.0, s) * 1000 for s in samples]
        p50, p99 = statistics.median(ms), _pct(ms, 0.99)
        note = f" ({early} early)" if early else ""
        self.rep.add(f"pickup p50/p99 {name}{note}", f"{p50:.2f} / {p99:.2f} ms", target)
        return p99

    async def big(self) -> None:
        for backend in BACKENDS:
            empty = await self.c10(backend)
            big = await _best(
                f"drain gladd-{backend} c10 behind {BIG_ROWS:,} rows",
                self.repeat,
                lambda backend=backend: gladd_drain(backend, self.n, 10, big=BIG_ROWS),
            )
            ratio = big / empty
            self.rep.add(
                f"drain gladd-{backend} c10 + 1M rows",
                f"{_rate(big)} {ratio:.2f}x",
                f"{1 - BIG_TOLERANCE:.2f}x-{1 + BIG_TOLERANCE:.2f}x of empty",
            )
            self.rep.verdict(abs(ratio - 1) <= BIG_TOLERANCE)
            if backend == "postgresql" and "analyzed" in self.rates:
                self.rep.add(
                    "  + 1M rows / ANALYZEd empty (info)", f"{big / self.rates['analyzed']:.2f}x"
                )

    async def daemon(self) -> None:
        rss, cpu = await _timed(
            "idle gladd run daemon", lambda: anyio.to_thread.run_sync(idle_daemon)
        )
        self.rep.add("idle daemon RSS", f"{rss:.1f} MB", f"≤ {RSS_MB:g} MB")
        self.rep.verdict(rss <= RSS_MB)
        self.rep.add("idle daemon CPU", f"{cpu:.2f} %", f"< {IDLE_CPU_PCT:g} %")
        self.rep.verdict(cpu < IDLE_CPU_PCT)


PEER_DRAINS: dict[str, Callable[[str, int], Awaitable[float]]] = {
    "pgqueuer": _peers.pgqueuer_drain,
    "procrastinate": _peers.procrastinate_drain,
}
PEER_LATENCIES: dict[str, Callable[..., Awaitable[list[float]]]] = {
    "pgqueuer": _peers.pgqueuer_latency,
    "procrastinate": _peers.procrastinate_latency,
}
BACKENDS = ("sqlite", "postgresql")


async def run(args: argparse.Namespace) -> Report:
    parts = set(args.parts)
    bench = Bench(n=args.n, m=args.m, repeat=args.repeat)
    print(
        f"bench_executor: N={args.n:,} M={args.m} repeat={args.repeat} cores={os.cpu_count()}"
        f" server={SERVER}"
    )
    if "drain" in parts:
        await bench.drain()
    if "best" in parts:
        await bench.best(args.best)
    if "peers" in parts:
        await bench.peers()
    if "latency" in parts:
        await bench.latency()
    if "big" in parts and args.big:
        await bench.big()
    if "daemon" in parts:
        await bench.daemon()
    return bench.rep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="tasks per drain")
    parser.add_argument("--m", type=int, default=500, help="latency samples per system")
    parser.add_argument(
        "--repeat", type=int, default=3, help="drains run this often; the best counts"
    )
    parser.add_argument(
        "--big", action=argparse.BooleanOptionalAction, default=True, help="1M-row drain"
    )
    parser.add_argument(
        "--best",
        type=lambda s: [int(c) for c in s.split(",")],
        default=[50, 100],
        help="concurrencies tried for gladd's best drain (comma-separated)",
    )
    parser.add_argument(
        "--parts",
        type=lambda s: s.split(","),
        default=list(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)}",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="traces on (gladd[otel]): every span recorded and dropped, to price them",
    )
    args = parser.parse_args()
    if args.otel:
        tracing.install(node="bench", environ={**os.environ, "OTEL_TRACES_EXPORTER": "none"})
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    started = time.perf_counter()
    report = asyncio.run(run(args))
    return report.finish(started)


if __name__ == "__main__":
    sys.exit(main())
