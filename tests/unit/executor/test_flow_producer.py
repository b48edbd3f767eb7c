"""The producer under flow control: limits hold, held tasks spend nothing, unlimited kinds
are not starved, pauses and reloads apply live. The executor with the in-memory store (the
store contract runs the same claims on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from gladd.executor.kinds import TaskContext
from gladd.reload.reloader import Served
from gladd.runtime import given_policies
from gladd.store import TaskState
from tests.unit.executor.test_executor import Harness, policies, running
from tests.unit.manual_clock import ManualClock

pytestmark = pytest.mark.anyio


class Gauge:
    """Handlers that hold until released, counting how many run at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.started: list[int] = []
        self.running: set[int] = set()
        self.release = anyio.Event()  # releases every handler, now and later
        self._one: dict[int, anyio.Event] = {}

    def let_go(self, task_id: int) -> None:
        """Release one handler."""
        self._one.setdefault(task_id, anyio.Event()).set()

    async def handler(self, ctx: TaskContext, payload: Any) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.started.append(ctx.id)
        self.running.add(ctx.id)
        one = self._one.setdefault(ctx.id, anyio.Event())
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_set_when, self.release, one)
                await one.wait()
                tg.cancel_scope.cancel()
        finally:
            self.now -= 1
            self.running.discard(ctx.id)


async def _set_when(event: anyio.Event, then: anyio.Event) -> None:
    await event.wait()
    then.set()


async def until(condition: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)


async def settled(h: Harness, seconds: float = 0.2) -> None:
    """Let the producer go round its loop a few times (poll interval 50ms)."""
    await anyio.sleep(seconds)


async def states(h: Harness, ids: list[int]) -> list[tuple[TaskState, int]]:
    tasks = [await h.store.get(i) for i in ids]
    return [(t.state, t.attempt) for t in tasks if t is not None]


LIMITED = """
[tasks."t.limited"]
concurrency = 2
"""


async def test_a_kind_limited_to_two_runs_two_at_a_time_and_the_rest_wait_unattempted() -> None:
    gauge = Gauge()
    async with running({"t.limited": gauge.handler}, policies(concurrency=10, extra=LIMITED)) as h:
        ids = [await h.enqueue("t.limited") for _ in range(6)]
        await until(lambda: gauge.now == 2)
        await settled(h)
        assert gauge.now == 2
        waiting = [i for i in ids if i not in gauge.started]
        assert await states(h, waiting) == [(TaskState.PENDING, 0)] * 4
        reasons = await h.service.waiting(await h.service.get(waiting[0]))
        assert reasons == ["limit kind:t.limited is full: 2 of 2 running"]
        gauge.release.set()
        for i in ids:
            await h.wait_for(i, TaskState.SUCCEEDED)
    assert gauge.peak == 2
    assert await states(h, ids) == [(TaskState.SUCCEEDED, 1)] * 6


async def test_a_full_limit_does_not_starve_an_unlimited_kind_behind_it() -> None:
    gauge = Gauge()

    async def free(ctx: TaskContext, payload: Any) -> str:
        return "ran"

    handlers = {"t.limited": gauge.handler, "t.free": free}
    async with running(handlers, policies(concurrency=10, extra=LIMITED)) as h:
        # The limited tasks are first in claim order (higher priority) and fill their limit.
        for _ in range(5):
            await h.enqueue("t.limited", priority=10)
        await until(lambda: gauge.now == 2)
        free_ids = [await h.enqueue("t.free") for _ in range(5)]
        for i in free_ids:
            await h.wait_for(i, TaskState.SUCCEEDED)
        assert gauge.now == 2
        gauge.release.set()


async def test_lowering_a_limit_live_lets_running_tasks_finish_and_starts_none_until_under() -> (
    None
):
    gauge = Gauge()
    wide = policies(concurrency=10, extra=LIMITED.replace("= 2", "= 3"))
    async with running({"t.limited": gauge.handler}, wide) as h:
        ids = [await h.enqueue("t.limited") for _ in range(6)]
        await until(lambda: gauge.now == 3)
        first = sorted(gauge.running)
        narrow = policies(concurrency=10, extra=LIMITED.replace("= 2", "= 1"))
        h.runtime.served = Served(generation=2, loaded=given_policies(narrow))
        h.executor.wake()
        # The three go on; as each finishes, nothing new starts until none of them runs.
        for task_id in first:
            await settled(h)
            assert gauge.running <= set(first), "a task started above the lowered limit"
            gauge.let_go(task_id)
            await h.wait_for(task_id, TaskState.SUCCEEDED)
        rest = [i for i in ids if i not in first]
        gauge.peak = 0
        for _ in rest:
            await until(lambda: gauge.now == 1)
            await settled(h)
            assert gauge.now == 1
            (task_id,) = gauge.running
            gauge.let_go(task_id)
            await h.wait_for(task_id, TaskState.SUCCEEDED)
    assert gauge.peak == 1
    assert await states(h, ids) == [(TaskState.SUCCEEDED, 1)] * 6


async def test_a_paused_kind_is_not_claimed_until_resumed_and_spends_no_attempt() -> None:
    async def work(ctx: TaskContext, payload: Any) -> str:
        return "done"

    async with running({"t.work": work, "t.other": work}) as h:
        await h.service.pause("t.work", seconds=3600, reason="incident 7", by="cli:ops@host")
        held = await h.enqueue("t.work")
        other = await h.enqueue("t.other")
        await h.wait_for(other, TaskState.SUCCEEDED)
        await settled(h)
        assert await states(h, [held]) == [(TaskState.PENDING, 0)]
        (reason,) = await h.service.waiting(await h.service.get(held))
        assert reason.startswith("paused (kind:t.work, by cli:ops@host) until ")
        assert reason.endswith(": incident 7")
        assert [p["target"] for p in await h.service.pauses()] == ["kind:t.work"]
        assert h.executor.flow().held_kinds["t.work"].reason == "incident 7"
        ended = await h.service.resume("t.work")
        assert ended is not None
        assert ended.target == "kind:t.work"
        await h.wait_for(held, TaskState.SUCCEEDED)
        assert await h.service.resume("t.work") is None  # not paused any more


async def test_a_pause_ends_by_itself_at_its_time() -> None:
    async def work(ctx: TaskContext, payload: Any) -> str:
        return "done"

    async with running({"t.work": work}) as h:
        await h.service.pause("t.work", seconds=0.3, by="cli:ops@host")
        held = await h.enqueue("t.work")
        await settled(h, 0.1)
        assert await states(h, [held]) == [(TaskState.PENDING, 0)]
        await h.wait_for(held, TaskState.SUCCEEDED, timeout=5)


async def test_a_rate_limit_starts_a_burst_then_one_per_period_on_the_clock() -> None:
    clock = ManualClock()
    started: list[float] = []

    async def work(ctx: TaskContext, payload: Any) -> None:
        started.append(clock.monotonic())

    rated = '[tasks."t.rated"]\nrate = "10/s"\nburst = 2\n'
    async with running({"t.rated": work}, policies(concurrency=10, extra=rated), clock) as h:
        ids = [await h.enqueue("t.rated") for _ in range(5)]
        h.executor.wake()
        await until(lambda: len(started) == 2)
        await settled(h)
        assert len(started) == 2  # the burst; no token until time moves
        for n in (3, 4, 5):
            await clock.advance(0.1)
            h.executor.wake()
            await until(lambda n=n: len(started) == n)
        for i in ids:
            await h.wait_for(i, TaskState.SUCCEEDED)
    t0 = started[0]
    assert [round(t - t0, 3) for t in started] == [0.0, 0.0, 0.1, 0.2, 0.3]


COOLING = """
[services.crm]

[tasks."t.crm"]
service = "crm"
"""


async def test_a_cooldown_begun_on_this_node_holds_the_services_kinds_for_every_node() -> None:
    async def work(ctx: TaskContext, payload: Any) -> str:
        return "done"

    async with running({"t.crm": work, "t.other": work}, policies(extra=COOLING)) as h:
        cooldowns = h.runtime.resilience.cooldowns
        until_at = h.runtime.tasks.now() + timedelta(hours=1)
        cooldowns.begin("crm", until_at, "429 with Retry-After: 3600", status=429)
        await until(lambda: "t.crm" in h.executor.flow().held_kinds)
        (stored,) = await h.store.pauses(now=h.runtime.tasks.now())
        assert (stored.target, stored.until, stored.by) == ("cooldown:crm", until_at, "cooldown:w1")
        held = await h.enqueue("t.crm")
        other = await h.enqueue("t.other")
        await h.wait_for(other, TaskState.SUCCEEDED)
        await settled(h)
        assert await states(h, [held]) == [(TaskState.PENDING, 0)]
        # An operator ends it: the kinds are claimed again, the transport sends again.
        assert await h.service.resume("cooldown:crm") is not None
        await h.wait_for(held, TaskState.SUCCEEDED)
        await until(lambda: cooldowns.get("crm") is None)
