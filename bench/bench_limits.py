"""Flow control: limits that cost nothing when unused, and limits that hold across nodes.

Run: ``.venv/bin/python bench/bench_limits.py [--n 20000] [--repeat 3] [--quick]``
(``--parts`` picks a subset: unused, concurrency, rate). The PostgreSQL server comes from
GLADD_TEST_DATABASE_URL (default: local ``postgres``); every PostgreSQL run gets a fresh
database ``gladd_bench_<hex>``, dropped afterwards; SQLite runs use a temp file.

1. Unused: N no-op tasks drained by a real Executor at concurrency 10, timed as
   bench_executor's drain (from the executor's start until ``succeeded`` reaches N), twice
   in the same run: with no limits defined, and with three kinds ``other.k0..2`` at
   ``concurrency = 5`` each, all listing ``[limits.x] concurrency = 10``, and OTHERS pending
   tasks of them, enqueued first (ahead in claim order). Before the timed drain a second
   node (its own store object, its own executor) fills limit x with handlers that wait until
   the drain is over, so the drained node's gated claim always has work it may not take. The
   drained node registers the other kinds too. Interleaved, ``--repeat`` times; best each.
2. Concurrency: one kind at ``concurrency = 40``, its handler sleeping D (``--sleep``: 50 ms
   and 200 ms; T tasks at 50 ms, as many seconds of work at 200 ms);
   four Executors in this process, each with its own PostgresStore (own pool) and
   ``executor.concurrency = 40``, timed from their start until T outcomes are stored.
   Compared with the ideal 40 / D; the peak of handlers running at once (counted in the
   handler) must stay ≤ 40. Then one SQLite node with the four nodes' 160 slots.
3. Rate: one kind at ``rate = "200/s"``, ``burst = 10``, a no-op handler that records
   its start time; four PostgreSQL nodes (concurrency 10 each). Starts counted over a
   window of W = 30 s that begins WARM = 5 s after the first start.

Exits 1 when a target is missed (see the printed table). ``--quick`` is a smoke run (small
N and T, a 5 s rate window): its verdicts are indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from loguru import logger

from gladd.executor.decide import new_task
from gladd.executor.kinds import KindRegistry, RegisteredKind, TaskContext, builtin_kinds
from gladd.executor.runner import Executor
from gladd.policies import Policies, parse_policies
from gladd.store import Store, TaskState
from gladd.store.factory import store_from_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_executor import SERVER, Report, enqueue_noops, gladd_url

ENQUEUE_CHUNK = 5000
POLL = 0.005  # seconds between checks of the executors' counters

OTHER_KINDS = ("other.k0", "other.k1", "other.k2")
OTHER_EACH = 5  # [tasks."other.kN"] concurrency
OTHER_LIMIT = 10  # [limits.x] concurrency over the three
LIMITED = "bench.limited"
NODES = 4
SLOTS = 40  # executor.concurrency per node in part 2
LIMIT = 40  # the kind's concurrency in part 2
SLEEP = 0.050  # part 2's handler
RATE = 200.0
BURST = 10
WARM = 5.0

# Targets
UNUSED_FACTOR = 0.9  # with limits for other kinds ≥ this x without
IDEAL_FACTOR = 0.9  # part 2 ≥ this x LIMIT / SLEEP
RATE_TOLERANCE = 0.05  # part 3 |achieved / RATE - 1| ≤ this

PARTS = ("unused", "concurrency", "rate")


# -- helpers ---------------------------------------------------------------------------------


def policies_of(text: str) -> Policies:
    return parse_policies(text.encode(), source="bench").policies


def unused_policies(
    concurrency: int, *, limited: bool, noop_paused: bool = False, limit_paused: bool = False
) -> Policies:
    text = f"[executor]\nconcurrency = {concurrency}\n"
    if noop_paused:
        text += '[tasks."gladd.noop"]\npaused = true\n'
    if limited:
        for kind in OTHER_KINDS:
            text += f'[tasks."{kind}"]\nconcurrency = {OTHER_EACH}\nlimits = ["x"]\n'
        text += f"[limits.x]\nconcurrency = {OTHER_LIMIT}\npaused = {str(limit_paused).lower()}\n"
    return policies_of(text)


async def enqueue(store: Store, policies: Policies, kinds: list[str]) -> None:
    now = datetime.now(UTC)
    for start in range(0, len(kinds), ENQUEUE_CHUNK):
        batch = [
            new_task(policies, kind=kind, payload={}, run_at=now)
            for kind in kinds[start : start + ENQUEUE_CHUNK]
        ]
        await store.enqueue_many(batch, now=now)


@dataclass
class Calls:
    """Store calls an executor made, by method (for the diagnosis rows)."""

    counts: Counter[str] = field(default_factory=Counter)
    taken: Counter[str] = field(default_factory=Counter)  # tasks returned by each claim
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Time spent in each, in total."""

    def watch(self, store: Store) -> Store:
        """``store`` with its claims, waits and rings counted (instance attributes)."""
        for name in ("claim", "claim_gated", "wait_for_work", "ring", "finish"):
            setattr(store, name, self._counted(name, getattr(store, name)))
        return store

    def _counted(
        self, name: str, method: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            started = time.perf_counter()
            try:
                result = await method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
            if name == "claim":
                self.taken[name] += len(result)
            elif name == "claim_gated":
                self.taken[name] += len(result.tasks)
            return result

        return counted

    def mean_ms(self, name: str) -> float:
        return self.seconds[name] / max(1, self.counts[name]) * 1000

    def describe(self) -> str:
        c, t = self.counts, self.taken
        return (
            f"claim {c['claim']} ({t['claim']} tasks), claim_gated {c['claim_gated']}"
            f" ({t['claim_gated']} tasks), wait_for_work {c['wait_for_work']},"
            f" ring {c['ring']}, finish {c['finish']}; mean ms: claim {self.mean_ms('claim'):.1f},"
            f" claim_gated {self.mean_ms('claim_gated'):.1f}, finish {self.mean_ms('finish'):.1f},"
            f" ring {self.mean_ms('ring'):.1f}, waits {self.seconds['wait_for_work']:.1f} s in all"
        )


@contextlib.asynccontextmanager
async def opened(url: str, count: int) -> Any:
    stores = [store_from_url(url) for _ in range(count)]
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            await store.close()


async def wait_until(check: Callable[[], bool], timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not check():  # noqa: ASYNC110 - polls counters
            await anyio.sleep(POLL)


async def settled(executors: list[Executor]) -> None:
    """Until no executor holds an unwritten task, twice 0.25 s apart: a claim in flight
    when its kinds were paused may still bring tasks back."""
    while True:
        await wait_until(lambda: not any(e.unreleased for e in executors), 30)
        await anyio.sleep(0.25)
        if not any(e.unreleased for e in executors):
            return


# -- 1. limits that are not in the way -------------------------------------------------------


@dataclass
class Unused:
    rate: float
    calls: Calls
    gate_held: int


async def unused_drain(backend: str, n: int, others: int, *, limited: bool) -> Unused:
    """N no-ops drained with 10 free slots, beside a full limit of other kinds if ``limited``.

    One node. The no-ops are enqueued while their kind is paused (in the policies), after the
    limit has filled; the timed drain starts when the pause is lifted (``executor.wake()``)."""
    slots = 10 + (OTHER_LIMIT if limited else 0)  # 10 for the no-ops; the rest held
    policies = [unused_policies(slots, limited=limited, noop_paused=True)]
    release = anyio.Event()

    async def held(ctx: TaskContext, payload: object) -> None:
        await release.wait()

    other = [RegisteredKind(name=kind, handler=held) for kind in OTHER_KINDS]
    calls = Calls()
    async with gladd_url(backend) as url, opened(url, 1) as (store,):
        executor = Executor(
            store=calls.watch(store),
            kinds=KindRegistry([*builtin_kinds(), *(other if limited else [])]),
            policies=lambda: policies[0],
            worker_id=f"bench-{secrets.token_hex(3)}",
        )
        async with anyio.create_task_group() as tg:
            await tg.start(executor.run)
            if limited:
                kinds = [OTHER_KINDS[i % len(OTHER_KINDS)] for i in range(others)]
                await enqueue(store, policies[0], kinds)
                await wait_until(lambda: executor.running == OTHER_LIMIT, 30)
            await enqueue_noops(store, policies[0], n)
            calls.counts.clear()
            calls.seconds.clear()
            calls.taken.clear()
            started = time.perf_counter()
            policies[0] = unused_policies(slots, limited=limited)
            executor.wake()
            await wait_until(lambda: executor.statistics().succeeded >= n, 600)
            elapsed = time.perf_counter() - started
            gate_held = executor.producer.gate_held
            assert executor.running == (OTHER_LIMIT if limited else 0), executor.running
            # The limit paused (nothing more of it is claimed), its handlers let go, and the
            # node stopped only once every outcome is stored: Executor.run cancels a write
            # still in flight when it stops (see bench/README.md).
            policies[0] = unused_policies(slots, limited=limited, limit_paused=True)
            executor.wake()
            release.set()
            await settled([executor])
            executor.stop()
        took = executor.statistics().claimed
        assert took == n + (OTHER_LIMIT if limited else 0), executor.statistics()
        counts = await store.counts()
        assert counts.get(TaskState.SUCCEEDED, 0) == took, counts
    return Unused(rate=n / elapsed, calls=calls, gate_held=gate_held)


# -- 2. a concurrency limit across nodes -----------------------------------------------------


@dataclass
class Gauge:
    """What the handlers saw: how many ran at once, at most, and when each started."""

    running: int = 0
    peak: int = 0
    starts: list[float] = field(default_factory=list)
    by_node: Counter[str] = field(default_factory=Counter)

    @contextlib.contextmanager
    def one(self, node: str) -> Iterator[None]:
        self.starts.append(time.perf_counter())
        self.by_node[node] += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            self.running -= 1


@dataclass
class Nodes:
    rate: float  # tasks per second, start to last outcome stored
    gauge: Gauge
    calls: list[Calls]


async def run_nodes(
    url: str,
    *,
    nodes: int,
    policies: Policies,
    total: int,
    sleep: float,
    seconds: float | None = None,
) -> Nodes:
    """``total`` tasks of LIMITED through ``nodes`` executors, each its own store; until
    all are stored, or for ``seconds`` when given."""
    gauge = Gauge()

    async def handler(ctx: TaskContext, payload: object) -> None:
        with gauge.one(ctx.task.owner or ""):
            if sleep:
                await anyio.sleep(sleep)

    kinds = KindRegistry([*builtin_kinds(), RegisteredKind(name=LIMITED, handler=handler)])
    calls = [Calls() for _ in range(nodes)]
    current = [policies]
    async with opened(url, nodes) as stores:
        await enqueue(stores[0], policies, [LIMITED] * total)
        executors = [
            Executor(
                store=calls[i].watch(store),
                kinds=kinds,
                policies=lambda: current[0],
                worker_id=f"bench-node{i}-{secrets.token_hex(2)}",
            )
            for i, store in enumerate(stores)
        ]

        def done() -> int:
            return sum(e.statistics().succeeded for e in executors)

        async with anyio.create_task_group() as tg:
            started = time.perf_counter()
            for executor in executors:
                await tg.start(executor.run)
            if seconds is None:
                await wait_until(lambda: done() >= total, 600)
            else:
                await anyio.sleep(seconds)
            elapsed = time.perf_counter() - started
            if seconds is not None:
                # Pause the kind, let what runs end, stop once every outcome is stored:
                # Executor.run cancels a write still in flight when it stops (bench/README.md).
                current[0] = policies.model_copy(
                    update={"tasks": {**policies.tasks, LIMITED: _paused(policies, LIMITED)}}
                )
                for executor in executors:
                    executor.wake()
                await settled(executors)
            for executor in executors:
                executor.stop()
        if seconds is None:
            counts = await stores[0].counts()
            assert counts.get(TaskState.SUCCEEDED, 0) == total, counts
        return Nodes(rate=done() / elapsed, gauge=gauge, calls=calls)


def _paused(policies: Policies, kind: str) -> Any:
    return policies.tasks[kind].model_copy(update={"paused": True})


def concurrency_policies(slots: int) -> Policies:
    return policies_of(
        f'[executor]\nconcurrency = {slots}\n[tasks."{LIMITED}"]\nconcurrency = {LIMIT}\n'
    )


async def limited_run(backend: str, nodes: int, slots: int, total: int, sleep: float) -> Nodes:
    async with gladd_url(backend) as url:
        return await run_nodes(
            url, nodes=nodes, policies=concurrency_policies(slots), total=total, sleep=sleep
        )


# -- 3. a rate limit across nodes ------------------------------------------------------------


async def rate_run(window: float) -> tuple[Nodes, float]:
    """(the run, starts per second over ``window`` seconds from WARM after the first)."""
    policies = policies_of(f'[tasks."{LIMITED}"]\nrate = "{RATE:g}/s"\nburst = {BURST}\n')
    total = int(RATE * (WARM + window) * 1.5) + 1000  # never runs dry, even at 1.5x the rate
    async with gladd_url("postgresql") as url:
        run = await run_nodes(
            url,
            nodes=NODES,
            policies=policies,
            total=total,
            sleep=0.0,
            seconds=WARM + window + 2.0,
        )
    starts = sorted(run.gauge.starts)
    assert len(starts) < total, "ran dry: the rate figure would be too low"
    begin = starts[0] + WARM
    inside = [s for s in starts if begin <= s < begin + window]
    return run, len(inside) / window


def densest(starts: list[float], span: float) -> int:
    """The most starts in any ``span`` seconds."""
    ordered, best, lo = sorted(starts), 0, 0
    for hi, at in enumerate(ordered):
        while at - ordered[lo] >= span:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# -- the run ---------------------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f} /s"


async def _timed(label: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    print(f"… {label}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = await fn()
    print(f"  ({time.perf_counter() - started:.1f}s)", file=sys.stderr, flush=True)
    return result


@dataclass
class Bench:
    args: argparse.Namespace
    rep: Report = field(default_factory=Report)

    async def unused(self) -> None:
        a = self.args
        for backend in BACKENDS:
            best: dict[bool, Unused] = {}
            for i in range(a.repeat):  # interleaved: drift on a shared box hits both alike
                for limited in (False, True):
                    label = "with limits" if limited else "no limits"
                    got: Unused = await _timed(
                        f"drain gladd-{backend} c10, {label} [{i + 1}/{a.repeat}]",
                        functools.partial(unused_drain, backend, a.n, a.others, limited=limited),
                    )
                    print(f"    {got.rate:,.0f} /s; {got.calls.describe()}", file=sys.stderr)
                    if limited not in best or got.rate > best[limited].rate:
                        best[limited] = got
            without, with_ = best[False], best[True]
            self.rep.add(f"drain gladd-{backend} c10, no limits", _rate(without.rate))
            self.rep.add(
                "  store calls (info), no limits", without.calls.describe().split(", wait")[0]
            )
            self.rep.add(
                f"  store calls (info), limits; {with_.gate_held} held",
                with_.calls.describe().split(", wait")[0],
            )
            ratio = with_.rate / without.rate
            self.rep.add(
                f"drain gladd-{backend} c10, beside a full limit",
                f"{_rate(with_.rate)} {ratio:.2f}x",
                f"≥ {UNUSED_FACTOR:g}x no limits",
            )
            self.rep.verdict(ratio >= UNUSED_FACTOR)

    async def concurrency(self) -> None:
        for sleep in self.args.sleep:
            await self._concurrency(sleep, max(200, round(self.args.tasks * SLEEP / sleep)))

    async def _concurrency(self, sleep: float, tasks: int) -> None:
        ideal = LIMIT / sleep
        for backend, nodes, slots in (
            ("postgresql", NODES, SLOTS),
            ("sqlite", 1, SLOTS * NODES),
        ):
            where = f"{nodes} nodes x c{slots}" if nodes > 1 else f"1 node c{slots}"
            run: Nodes = await _timed(
                f"concurrency {LIMIT}, {backend}, {where}",
                functools.partial(limited_run, backend, nodes, slots, tasks, sleep),
            )
            for i, calls in enumerate(run.calls):
                print(f"    node {i}: {calls.describe()}", file=sys.stderr)
            factor = run.rate / ideal
            self.rep.add(
                f"concurrency {LIMIT}, D {sleep * 1000:g} ms, {backend}, {where}",
                f"{_rate(run.rate)} {factor:.2f}x",
                f"≥ {IDEAL_FACTOR:g}x ideal {ideal:,.0f} /s",
            )
            self.rep.verdict(factor >= IDEAL_FACTOR)
            self.rep.add("  peak running at once", str(run.gauge.peak), f"≤ {LIMIT}")
            self.rep.verdict(run.gauge.peak <= LIMIT)
            if nodes > 1:
                shares = "/".join(str(n) for _, n in sorted(run.gauge.by_node.items()))
                self.rep.add("  tasks per node (info)", shares)

    async def rate(self) -> None:
        window = self.args.window
        run, achieved = await _timed(
            f"rate {RATE:g}/s burst {BURST}, postgresql, {NODES} nodes, {window:g}s window",
            lambda: rate_run(window),
        )
        for i, calls in enumerate(run.calls):
            print(f"    node {i}: {calls.describe()}", file=sys.stderr)
        off = achieved / RATE - 1
        self.rep.add(
            f"rate {RATE:g}/s, {NODES} nodes, starts over {window:g} s",
            f"{achieved:,.1f} /s {off:+.1%}",
            f"within ±{RATE_TOLERANCE:.0%}",
        )
        self.rep.verdict(abs(off) <= RATE_TOLERANCE)
        shares = "/".join(str(n) for _, n in sorted(run.gauge.by_node.items()))
        self.rep.add("  starts per node (info)", shares)
        self.rep.add(
            f"  most starts in any 1 s (info; ≤ {RATE + BURST:g})",
            str(densest(run.gauge.starts, 1.0)),
        )
        gated = sum(c.counts["claim_gated"] for c in run.calls)
        self.rep.add(
            "  gated claims per start (info)", f"{gated / max(1, len(run.gauge.starts)):.2f}"
        )


BACKENDS = ("sqlite", "postgresql")


async def run(args: argparse.Namespace) -> Report:
    parts = set(args.parts)
    bench = Bench(args)
    print(
        f"bench_limits: N={args.n:,} others={args.others:,} T={args.tasks:,}"
        f" window={args.window:g}s repeat={args.repeat} cores={os.cpu_count()} server={SERVER}"
    )
    if "unused" in parts:
        await bench.unused()
    if "concurrency" in parts:
        await bench.concurrency()
    if "rate" in parts:
        await bench.rate()
    return bench.rep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="no-op tasks per drain (part 1)")
    parser.add_argument(
        "--others", type=int, default=1000, help="pending tasks of the limited kinds (part 1)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="drains per case; the best counts")
    parser.add_argument(
        "--tasks", type=int, default=4000, help="tasks of the limited kind at D = 50 ms (2)"
    )
    parser.add_argument(
        "--sleep",
        type=lambda s: [float(ms) / 1000 for ms in s.split(",")],
        default=[SLEEP, 0.2],
        help="part 2's handler durations D in ms, comma-separated (default 50,200); the "
        "task count scales to keep each run as long as at 50 ms",
    )
    parser.add_argument("--window", type=float, default=30.0, help="rate window, seconds (3)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: N 3000, T 1000, 5 s window, 1 repeat"
    )
    parser.add_argument(
        "--parts",
        type=lambda s: s.split(","),
        default=list(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)}",
    )
    args = parser.parse_args()
    if args.quick:
        args.n, args.others, args.tasks, args.window, args.repeat = 3000, 200, 1000, 5.0, 1
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("BENCH_LOG", "WARNING"))
    started = time.perf_counter()
    report = asyncio.run(run(args))
    return report.finish(started)


if __name__ == "__main__":
    sys.exit(main())
