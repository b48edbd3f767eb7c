"""Success-path overhead per call: gladd's guard against the stack a Python user builds today.

Run: ``.venv/bin/python bench/bench_guard.py``. Each figure is the best of several rounds
of a tight loop, minus the bare ``await`` of the same coroutine function. Exits 1 when a
target is missed:

- gladd full guard (retry + breaker + attempt timeout, Counters sink) ≤ 0.15 x the peer stack
  (tenacity AsyncRetrying + aiobreaker + anyio.fail_after) and < stamina alone;
- gladd without a timeout ≤ 1.5 µs per call.

A second table, for information, times a callee that suspends once (``sleep(0)``), where a
timer must really be armed. A third prices traces (``gladd[otel]``) on one request through
a service's resilient transport over an in-memory inner transport: off (the default) against
on, with every span recorded and then dropped (no exporter): the hot path's cost of the
switch, and of the spans themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import sys
import time
from collections.abc import Awaitable, Callable

import aiobreaker
import anyio
import httpx
import stamina
import tenacity
from opentelemetry.sdk.trace import TracerProvider

from gladd import tracing
from gladd.policies.model import BreakerPolicy, RetryPolicy
from gladd.resilience import Counters, guard_for
from gladd.resilience.retry import RetryPlan
from gladd.resilience.spans import SpanEvents
from gladd.resilience.transport import ResilientTransport

ROUNDS = 7
CALLS = 20_000
TIMEOUT = 10.0

Call = Callable[[], Awaitable[object]]


async def immediate() -> int:
    return 1


async def suspends() -> int:
    await asyncio.sleep(0)
    return 1


def gladd_calls(callee: Call) -> dict[str, Call]:
    retry = RetryPolicy()
    breaker = BreakerPolicy()
    full = guard_for(
        name="bench", retry=retry, breaker=breaker, timeout=TIMEOUT, sinks=[Counters()]
    )
    plan = dataclasses.replace(RetryPlan.from_policy("bench", retry), deadline=None)
    bare = guard_for(name="bench", retry=plan, breaker=breaker, timeout=None, sinks=[Counters()])

    async def gladd_full() -> object:
        return await full.call(callee)

    async def gladd_no_timeout() -> object:
        return await bare.call(callee)

    return {"gladd full guard": gladd_full, "gladd without timeout": gladd_no_timeout}


def peer_calls(callee: Call) -> dict[str, Call]:
    breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=datetime.timedelta(seconds=60))

    async def timed() -> object:
        with anyio.fail_after(TIMEOUT):
            return await callee()

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(3) | tenacity.stop_after_delay(60),
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=10),
        retry=tenacity.retry_if_exception_type((ConnectionError, TimeoutError)),
        reraise=True,
    )
    async def peer_stack() -> object:
        return await breaker.call_async(timed)

    @stamina.retry(on=(ConnectionError, TimeoutError), attempts=3, timeout=60)
    async def stamina_alone() -> object:
        return await callee()

    return {"peer stack": peer_stack, "stamina alone": stamina_alone}


async def per_call(fn: Call) -> float:
    """Best seconds per call over ROUNDS rounds of CALLS calls."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            await fn()
        best = min(best, (time.perf_counter() - started) / CALLS)
    return best


async def measure(callee: Call) -> dict[str, float]:
    runs: dict[str, Call] = {"bare await": callee, **gladd_calls(callee), **peer_calls(callee)}
    raw = {name: await per_call(fn) for name, fn in runs.items()}
    return {name: max(seconds - raw["bare await"], 1e-9) for name, seconds in raw.items()} | {
        "bare await": raw["bare await"]
    }


async def measure_transport() -> dict[str, float]:
    """One GET through a service's transport, traces off and on, over an inner transport
    that answers at once."""
    inner = httpx.MockTransport(lambda request: httpx.Response(200, content=b"ok"))
    request = httpx.Request("GET", "http://127.0.0.1:8080/orders")
    retry, breaker = RetryPolicy(), BreakerPolicy()
    off = ResilientTransport(
        guard_for(name="bench", retry=retry, breaker=breaker, timeout=TIMEOUT, sinks=[Counters()]),
        inner,
    )
    on = ResilientTransport(
        guard_for(
            name="bench",
            retry=retry,
            breaker=breaker,
            timeout=TIMEOUT,
            sinks=[Counters(), SpanEvents()],
        ),
        inner,
    )

    async def bare() -> object:
        return await inner.handle_async_request(request)

    async def traces_off() -> object:
        return await off.handle_async_request(request)

    async def traces_on() -> object:
        return await on.handle_async_request(request)

    raw = {"bare inner transport": await per_call(bare)}
    raw["transport, traces off"] = await per_call(traces_off)
    tracing.enable(TracerProvider())  # spans recorded, then dropped: no processor
    try:
        raw["transport, traces on"] = await per_call(traces_on)
    finally:
        tracing.disable()
    base = raw["bare inner transport"]
    return {"bare inner transport": base} | {
        name: max(seconds - base, 1e-9) for name, seconds in raw.items() if seconds is not base
    }


def show(title: str, figures: dict[str, float]) -> None:
    print(title)
    for name, seconds in figures.items():
        label = "per call" if name.startswith("bare") else "overhead per call"
        print(f"  {name:<24} {seconds * 1e6:8.3f} µs {label}")


def main() -> int:
    logging.disable(logging.CRITICAL)  # stamina's default instrumentation, if any
    fast = asyncio.run(measure(immediate))
    show("callee completes without suspending:", fast)
    slow = asyncio.run(measure(suspends))
    show("callee suspends once (sleep(0)), for information:", slow)
    show(
        "one request through the resilient transport, for information:",
        asyncio.run(measure_transport()),
    )

    full, bare = fast["gladd full guard"], fast["gladd without timeout"]
    peer, alone = fast["peer stack"], fast["stamina alone"]
    checks = [
        (f"gladd full / peer stack = {full / peer:.3f}", full / peer <= 0.15, "≤ 0.15"),
        (f"gladd full / stamina    = {full / alone:.3f}", full < alone, "< 1"),
        (f"gladd without timeout   = {bare * 1e6:.3f} µs", bare <= 1.5e-6, "≤ 1.5 µs"),
    ]
    print("targets:")
    failed = False
    for text, ok, target in checks:
        print(f"  {text:<40} target {target:<9} {'ok' if ok else 'MISSED'}")
        failed |= not ok
    print(
        f"  (suspending callee: gladd full / peer stack = "
        f"{slow['gladd full guard'] / slow['peer stack']:.3f})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
