"""The async guard: retries, timeouts that really cancel, fallbacks, events, concurrency."""

from __future__ import annotations

import random

import anyio
import pytest
from loguru import logger

from gladd.errors import (
    AttemptTimeout,
    BreakerOpen,
    RetriesExhausted,
    RetryBudgetExhausted,
    TotalTimeout,
)
from gladd.resilience import (
    Counters,
    FakeClock,
    GaveUp,
    LogSink,
    RetryScheduled,
    guard_for,
)

from ._policies import breaker_policy, retry_policy

pytestmark = pytest.mark.anyio


class Script:
    """An async callable failing with the given errors, then returning ``value``."""

    def __init__(self, *errors: BaseException, value: object = "ok") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def make(clock=None, *, breaker=None, timeout=None, sinks=(), **retry):
    clock = clock or FakeClock()
    counters = Counters()
    events: list = []
    guard = guard_for(
        name="api",
        target="svc",
        retry=retry_policy(**({"jitter": "none", "base_delay": 0.1} | retry)),
        breaker=breaker,
        timeout=timeout,
        sinks=[counters, events.append, *sinks],
        clock=clock,
        rng=random.Random(3),
    )
    return guard, clock, counters, events


async def test_retries_then_succeeds_with_exact_sleeps_and_events():
    guard, clock, counters, events = make(attempts=4)
    fn = Script(ConnectionResetError(), ConnectionRefusedError())
    assert await guard.call(fn) == "ok"
    assert fn.calls == 3
    assert clock.slept == [0.1, 0.2]
    scheduled = [e for e in events if isinstance(e, RetryScheduled)]
    assert [(e.attempt, e.cause) for e in scheduled] == [(1, "reset"), (2, "connect")]
    f = counters.figures("api")
    assert (f.calls, f.succeeded, f.retries, f.succeeded_after_retry) == (1, 1, 2, 1)
    assert f.retry_success_rate == 1.0


async def test_gives_up_with_last_error_as_cause():
    guard, _, counters, events = make(attempts=3)
    last = ConnectionResetError("third")
    with pytest.raises(RetriesExhausted) as info:
        await guard.call(Script(ConnectionResetError(), ConnectionResetError(), last))
    assert info.value.__cause__ is last
    assert info.value.attempts == 3
    assert isinstance(events[-1], GaveUp)
    assert events[-1].reason == "attempts"
    assert counters.figures().failed_after_retry == 1


async def test_programming_error_is_raised_as_is_without_retry():
    guard, clock, _, _ = make()
    fn = Script(KeyError("bug"))
    with pytest.raises(KeyError):
        await guard.call(fn)
    assert fn.calls == 1
    assert clock.slept == []


async def test_deadline_stops_retrying_before_a_sleep_would_pass_it():
    guard, clock, _, _ = make(attempts=10, deadline=1.0, base_delay=0.3, max_delay=0.3)
    with pytest.raises(RetriesExhausted) as info:
        await guard.call(Script(*[ConnectionResetError()] * 10))
    assert info.value.reason == "deadline"
    assert sum(clock.slept) < 1.0


async def test_budget_exhaustion_under_a_burst():
    budget = {"ratio": 0.1, "window": "10s", "min_per_second": 0.0}
    guard, _, counters, _ = make(attempts=3, budget=budget)
    for _ in range(50):  # healthy traffic earns 5 retries
        await guard.call(Script())
    outcomes = []
    for _ in range(20):  # then the service falls over
        try:
            await guard.call(Script(*[ConnectionResetError()] * 5))
        except RetryBudgetExhausted:
            outcomes.append("budget")
        except RetriesExhausted:
            outcomes.append("attempts")
    f = counters.figures()
    assert f.retries == 7  # max(0.1 x 70 calls, 0) retries, not 20 x 2
    assert f.budget_exhausted == outcomes.count("budget") > 0


async def test_hanging_call_is_really_cancelled_by_the_attempt_timeout():
    guard, _, counters, _ = make(FakeClock(), attempts=1)
    guard = guard_for(name="api", timeout=0.05, sinks=[counters])
    seen = []

    async def hang() -> None:
        try:
            await anyio.sleep(10)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        finally:
            seen.append("finally")

    with anyio.fail_after(2):
        with pytest.raises(AttemptTimeout):
            await guard.call(hang)
    assert seen == ["CancelledError", "finally"]
    assert counters.figures().attempt_timeouts == 1


async def test_total_deadline_cuts_the_attempt_and_is_reported_as_total():
    guard = guard_for(name="api", retry=retry_policy(deadline=0.05, attempts=3))
    cancelled = []

    async def hang() -> None:
        try:
            await anyio.sleep(10)
        finally:
            cancelled.append(True)

    with pytest.raises(TotalTimeout):
        await guard.call(hang)
    assert cancelled == [True]


async def test_timed_out_attempt_is_retried_and_reported_distinctly():
    calls = []

    async def slow_then_fast() -> str:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep(10)
        await anyio.sleep(0)
        return "ok"

    counters = Counters()
    guard = guard_for(
        name="api",
        retry=retry_policy(base_delay=0, jitter="none"),
        timeout=0.05,
        sinks=[counters],
    )
    assert await guard.call(slow_then_fast) == "ok"
    assert counters.figures().attempt_timeouts == 1


async def test_outer_cancellation_is_not_a_timeout():
    guard = guard_for(name="api", retry=retry_policy(), timeout=5.0)
    with anyio.move_on_after(0.05) as scope:
        await guard.call(anyio.sleep, 10)
    assert scope.cancelled_caught


async def test_open_breaker_fails_fast_then_probes():
    clock = FakeClock()
    guard, _, counters, _ = make(clock, breaker=breaker_policy(failures=2, open_for=30), attempts=1)
    for _ in range(2):
        with pytest.raises(RetriesExhausted):
            await guard.call(Script(ConnectionResetError()))
    fn = Script()
    with pytest.raises(BreakerOpen) as info:
        await guard.call(fn)
    assert fn.calls == 0
    assert info.value.retry_in == 30
    clock.advance(30)
    assert await guard.call(fn) == "ok"
    assert counters.figures().breaker_opened == 1


async def test_static_fallback_answers_when_open():
    guard, _, counters, _ = make(
        breaker=breaker_policy(failures=1, fallback="static", fallback_value={"x": 1}), attempts=1
    )
    with pytest.raises(RetriesExhausted):
        await guard.call(Script(ConnectionResetError()))
    assert await guard.call(Script()) == {"x": 1}
    assert counters.figures().fallback_rate == 1.0


async def test_cache_fallback_serves_last_good_value_with_its_age():
    clock = FakeClock()
    guard, _, counters, events = make(
        clock,
        breaker=breaker_policy(
            failures=1, fallback="cache", cache_max_age=100, open_for=999, max_open_for=999
        ),
        attempts=1,
    )
    assert await guard.call(Script(value="v1"), key="a") == "v1"
    clock.advance(7)
    with pytest.raises(RetriesExhausted):
        await guard.call(Script(ConnectionResetError()), key="a")
    assert guard.cache_age("a") == 7
    assert await guard.call(Script(value="new"), key="a") == "v1"
    with pytest.raises(BreakerOpen):  # nothing cached for this key
        await guard.call(Script(), key="b")
    clock.advance(94)  # now 101 s old: too old to serve
    with pytest.raises(BreakerOpen):
        await guard.call(Script(), key="a")
    f = counters.figures()
    assert (f.cache_hits, f.cache_misses, f.cache_hit_rate) == (1, 2, 1 / 3)
    served = [e for e in events if type(e).__name__ == "FallbackServed"]
    assert served[0].age == 7


async def test_log_sink_says_policy_target_attempt_and_why():
    lines: list[str] = []
    handle = logger.add(lines.append, format="{level} {message}")
    try:
        guard, _, _, _ = make(attempts=2, sinks=[LogSink()])
        with pytest.raises(RetriesExhausted):
            await guard.call(Script(ConnectionResetError("peer"), ConnectionResetError("peer")))
    finally:
        logger.remove(handle)
    assert any(
        "[api → svc] attempt 1 failed (reset): ConnectionResetError: peer; retrying in 0.100s"
        in line
        for line in lines
    )
    assert any("giving up after 2 attempt(s), reason attempts" in line for line in lines)


async def test_200_concurrent_calls_keep_their_own_attempt_counts():
    """Nothing per call lives on the guard (tenacity's shared-state bug cannot happen)."""
    guard = guard_for(
        name="api",
        retry=retry_policy(attempts=5, base_delay=0.001, max_delay=0.004, budget=None),
        timeout=1.0,
        sinks=[counters := Counters()],
    )
    results: dict[int, object] = {}
    attempts: dict[int, int] = {}

    async def one(i: int) -> None:
        failures = i % 7  # 0..6; five attempts allowed, so 5 and 6 give up
        count = 0

        async def work() -> int:
            nonlocal count
            count += 1
            await anyio.sleep(random.random() / 1000)
            if count <= failures:
                raise ConnectionResetError(f"{i}")
            return i

        try:
            results[i] = await guard.call(work)
        except RetriesExhausted as exc:
            results[i] = exc
        attempts[i] = count

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    for i in range(200):
        failures = i % 7
        if failures < 5:
            assert results[i] == i
            assert attempts[i] == failures + 1
        else:
            assert isinstance(results[i], RetriesExhausted)
            assert str(results[i].last) == str(i)
            assert attempts[i] == 5
    f = counters.figures()
    assert f.calls == 200
    assert f.failed == sum(1 for i in range(200) if i % 7 >= 5)
