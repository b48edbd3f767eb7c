"""The executor against the in-memory store: outcomes, retries, timeouts, cancel, stop."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gladd.errors import TaskRejected
from gladd.executor.kinds import (
    FailTask,
    RegisteredKind,
    RetryLater,
    Snooze,
    TaskContext,
)
from gladd.executor.runner import utcnow
from gladd.policies import Policies, parse_policies
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store import Task, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.manual_clock import EPOCH, ManualClock

pytestmark = pytest.mark.anyio

FAST = """
[executor]
concurrency = {concurrency}
heartbeat = "50ms"
lease = "2s"
poll_interval = "50ms"
shutdown_grace = "{grace}"
retry = "quick"

[retry.quick]
attempts = 3
backoff = "constant"
base_delay = "10ms"
max_delay = "10ms"
jitter = "none"
deadline = "1h"
"""


def policies(concurrency: int = 4, grace: str = "300ms", extra: str = "") -> Policies:
    text = FAST.format(concurrency=concurrency, grace=grace) + extra
    return parse_policies(text.encode(), source="test").policies


class Harness:
    """The executor and the task service as the daemon wires them (:class:`Runtime`)."""

    def __init__(
        self,
        store: MemoryStore,
        kinds: Iterable[RegisteredKind],
        p: Policies,
        clock: ManualClock | None = None,
    ) -> None:
        self.store = store
        settings = Settings(state_dir=Path("/nonexistent/gladd-test"), plugin_paths=())
        # With a clock, the store's times and the executor's waits are both on it.
        timing: dict[str, Any] = {} if clock is None else {"now": clock.now, "clock": clock}
        self.runtime = Runtime(settings, p, store=store, worker_id="w1", **timing)
        for kind in kinds:
            self.runtime.kinds.register(kind)
        self.service = self.runtime.tasks
        self.executor = self.runtime.executor

    async def enqueue(self, kind: str, payload: Any = None, **options: Any) -> int:
        return (await self.service.enqueue(kind, payload, **options)).id

    async def wait_for(self, task_id: int, *states: TaskState, timeout: float = 5) -> Task:
        with anyio.fail_after(timeout):
            while True:
                task = await self.store.get(task_id)
                assert task is not None
                if task.state in states:
                    return task
                await anyio.sleep(0.005)

    async def put_off(self, task_id: int, timeout: float = 5) -> Task:
        """The task once an attempt's outcome made it pending again, due later."""
        with anyio.fail_after(timeout):
            while True:
                task = await self.store.get(task_id)
                assert task is not None
                if task.state is TaskState.PENDING and task.run_at > task.created_at:
                    return task
                await anyio.sleep(0.005)

    async def runs_again_only_after(self, clock: ManualClock, delay: float, task_id: int) -> Task:
        """Step time to 10ms short of ``delay``: the task is not claimed; past it, it runs."""
        await clock.advance(delay - 0.01)
        self.executor.wake()
        await anyio.wait_all_tasks_blocked()
        task = await self.store.get(task_id)
        assert task is not None
        assert task.state is TaskState.PENDING
        await clock.advance(0.01)
        self.executor.wake()
        return await self.wait_for(task_id, TaskState.SUCCEEDED)


@asynccontextmanager
async def running(
    handlers: dict[str, Callable[..., Any]],
    p: Policies | None = None,
    clock: ManualClock | None = None,
) -> AsyncIterator[Harness]:
    kinds = [
        RegisteredKind(name=name, handler=handler, plugin="test")
        for name, handler in handlers.items()
    ]
    store = MemoryStore()
    await store.open()
    harness = Harness(store, kinds, p or policies(), clock)
    async with anyio.create_task_group() as tg:
        await tg.start(harness.executor.run)
        yield harness
        harness.executor.stop()


async def test_runs_tasks_and_stores_their_results() -> None:
    async def double(ctx: TaskContext, payload: dict[str, int]) -> int:
        return payload["n"] * 2

    async with running({"t.double": double}) as h:
        ids = [await h.enqueue("t.double", {"n": n}) for n in range(20)]
        done = [await h.wait_for(i, TaskState.SUCCEEDED) for i in ids]
    assert [t.result for t in done] == [n * 2 for n in range(20)]
    assert all(t.attempt == 1 for t in done)
    assert h.executor.statistics().succeeded == 20


async def test_transient_errors_retry_with_backoff_then_dead_letter() -> None:
    calls: list[int] = []

    async def flaky(ctx: TaskContext, payload: object) -> None:
        calls.append(ctx.attempt)
        raise httpx.ConnectError("connection refused")

    async with running({"t.flaky": flaky}) as h:
        task_id = await h.enqueue("t.flaky")
        dead = await h.wait_for(task_id, TaskState.DEAD)
    assert calls == [1, 2, 3]
    assert [e.attempt for e in dead.errors] == [1, 2, 3]
    assert {e.type for e in dead.errors} == {"httpx.ConnectError"}
    assert dead.errors[0].message == "connection refused"


async def test_transient_error_then_success() -> None:
    async def second_time(ctx: TaskContext, payload: object) -> str:
        if ctx.attempt == 1:
            raise TimeoutError("upstream slow")
        return "ok"

    async with running({"t.second": second_time}) as h:
        done = await h.wait_for(await h.enqueue("t.second"), TaskState.SUCCEEDED)
    assert done.result == "ok"
    assert done.attempt == 2
    assert [e.type for e in done.errors] == ["TimeoutError"]


async def test_programming_errors_and_fail_task_go_straight_to_dead() -> None:
    async def bug(ctx: TaskContext, payload: object) -> None:
        raise KeyError("missing")

    async def hopeless(ctx: TaskContext, payload: object) -> None:
        raise FailTask("account closed")

    async with running({"t.bug": bug, "t.hopeless": hopeless}) as h:
        bug_task = await h.wait_for(await h.enqueue("t.bug"), TaskState.DEAD)
        hopeless_task = await h.wait_for(await h.enqueue("t.hopeless"), TaskState.DEAD)
    assert bug_task.attempt == 1
    assert bug_task.errors[0].type == "KeyError"
    assert hopeless_task.attempt == 1
    assert hopeless_task.errors[0].message == "account closed"


async def test_a_hanging_handler_is_cancelled_at_its_timeout() -> None:
    saw_cancel = threading.Event()

    async def hang(ctx: TaskContext, payload: object) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            saw_cancel.set()
            raise

    extra = '\n[tasks."t.hang"]\ntimeout = "100ms"\nretry = "once"\n[retry.once]\nattempts = 1\n'
    async with running({"t.hang": hang}, policies(extra=extra)) as h:
        started = time.monotonic()
        dead = await h.wait_for(await h.enqueue("t.hang"), TaskState.DEAD)
    assert time.monotonic() - started < 2
    assert saw_cancel.is_set()
    assert dead.errors[0].type == "gladd.errors.TaskTimeout"
    assert "timed out after 0.1s" in dead.errors[0].message
    assert h.executor.statistics().timeouts == 1


async def test_cancelling_a_running_task_stops_its_handler() -> None:
    started = anyio.Event()

    async def long(ctx: TaskContext, payload: object) -> None:
        started.set()
        await anyio.sleep(30)

    async with running({"t.long": long}) as h:
        task_id = await h.enqueue("t.long")
        await started.wait()
        requested = await h.service.cancel(task_id)
        assert requested.cancel_requested
        cancelled = await h.wait_for(task_id, TaskState.CANCELLED)
    assert cancelled.attempt == 1
    assert h.executor.statistics().cancelled == 1


async def test_graceful_stop_releases_running_tasks_without_spending_attempts() -> None:
    started = anyio.Event()

    async def long(ctx: TaskContext, payload: object) -> None:
        started.set()
        await anyio.sleep(30)

    async def quick(ctx: TaskContext, payload: object) -> str:
        await anyio.sleep(0.05)
        return "done"

    async with running({"t.long": long, "t.quick": quick}, policies(grace="300ms")) as h:
        long_id = await h.enqueue("t.long")
        await started.wait()
        quick_id = await h.enqueue("t.quick")
        await h.wait_for(quick_id, TaskState.RUNNING)
    # The context manager stopped the executor and waited for it.
    released = await h.store.get(long_id)
    finished = await h.store.get(quick_id)
    assert released is not None
    assert released.state is TaskState.PENDING
    assert released.attempt == 0  # refunded
    assert released.owner is None
    assert finished is not None
    assert finished.state is TaskState.SUCCEEDED


async def test_snooze_runs_again_later_without_spending_an_attempt() -> None:
    runs: list[int] = []

    async def snoozy(ctx: TaskContext, payload: object) -> int:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            raise Snooze(0.05)
        return ctx.attempt

    clock = ManualClock()
    async with running({"t.snooze": snoozy}, clock=clock) as h:
        task_id = await h.enqueue("t.snooze")
        snoozed = await h.put_off(task_id)
        assert snoozed.run_at == EPOCH + timedelta(seconds=0.05)
        done = await h.runs_again_only_after(clock, 0.05, task_id)
    assert runs == [1, 1]  # the snoozed run did not count as an attempt
    assert done.result == 1
    assert done.errors == ()


async def test_retry_later_uses_the_requested_delay() -> None:
    async def later(ctx: TaskContext, payload: object) -> int:
        if ctx.attempt == 1:
            raise RetryLater(0.2, "quota resets soon")
        return ctx.attempt

    clock = ManualClock()
    async with running({"t.later": later}, clock=clock) as h:
        task_id = await h.enqueue("t.later")
        failed_once = await h.put_off(task_id)
        done = await h.runs_again_only_after(clock, 0.2, task_id)
    assert done.result == 2
    assert done.errors[0].message == "quota resets soon"
    assert failed_once.state is TaskState.PENDING
    assert failed_once.run_at == EPOCH + timedelta(seconds=0.2)


async def test_concurrency_is_never_exceeded() -> None:
    current = 0
    peak = 0

    async def busy(ctx: TaskContext, payload: object) -> None:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        await anyio.sleep(0.02)
        current -= 1

    async with running({"t.busy": busy}, policies(concurrency=3)) as h:
        ids = [await h.enqueue("t.busy") for _ in range(15)]
        for task_id in ids:
            await h.wait_for(task_id, TaskState.SUCCEEDED)
    assert peak == 3


async def test_sync_handlers_run_in_threads_and_do_not_block_the_loop() -> None:
    def blocking(ctx: TaskContext, payload: object) -> str:
        time.sleep(0.3)
        return threading.current_thread().name

    async with running({"t.sync": blocking}) as h:
        task_id = await h.enqueue("t.sync")
        ticks = 0
        with anyio.move_on_after(0.25):
            while True:
                await anyio.sleep(0.01)
                ticks += 1
        done = await h.wait_for(task_id, TaskState.SUCCEEDED)
    assert ticks >= 10  # the loop kept turning while the handler slept
    assert done.result != threading.main_thread().name


async def test_a_late_result_after_rescue_is_discarded() -> None:
    release = anyio.Event()

    async def slow(ctx: TaskContext, payload: object) -> str:
        await release.wait()
        return "late"

    async with running({"t.slow": slow}) as h:
        task_id = await h.enqueue("t.slow")
        running_task = await h.wait_for(task_id, TaskState.RUNNING)
        # Another node presumes this worker dead and rescues the task (to dead: rescue cap
        # 0), so the token moves on and the old owner's result must not land.
        report = await h.store.rescue(now=utcnow(), lease=0.0, max_rescues=0)
        assert task_id in report.to_dead
        release.set()
        with anyio.fail_after(5):
            while h.executor.statistics().fenced == 0:
                await anyio.sleep(0.01)
        h.executor.stop()
    task = await h.store.get(task_id)
    assert task is not None
    assert task.state is TaskState.DEAD
    assert task.result is None
    assert task.token > running_task.token
    assert h.executor.statistics().succeeded == 0


async def test_builtin_kinds_and_payload_validation() -> None:
    async with running({}) as h:
        noop = await h.wait_for(await h.enqueue("gladd.noop"), TaskState.SUCCEEDED)
        slept = await h.wait_for(
            await h.enqueue("gladd.sleep", {"seconds": 0.01}), TaskState.SUCCEEDED
        )
        with pytest.raises(TaskRejected, match="unknown task kind 'nope'"):
            await h.enqueue("nope")
        with pytest.raises(TaskRejected, match=r"payload for gladd\.sleep is invalid: seconds"):
            await h.enqueue("gladd.sleep", {"seconds": -1})
    assert noop.result is None
    assert slept.result == {"slept": 0.01}


async def test_an_open_breaker_postpones_tasks_without_spending_attempts() -> None:
    calls: list[int] = []

    async def upstream(ctx: TaskContext, payload: object) -> str:
        calls.append(ctx.attempt)
        if len(calls) <= 2:
            raise httpx.ConnectError("refused")
        return "ok"

    extra = """
[retry.once]
attempts = 5
deadline = "1h"
backoff = "constant"
base_delay = "10ms"
max_delay = "10ms"
jitter = "none"
[breaker.up]
failures = 2
open_for = "300ms"
[services.up]
breaker = "up"
[tasks."t.up"]
service = "up"
retry = "once"
"""
    p = policies(extra=extra)
    store = MemoryStore()
    await store.open()
    h = Harness(store, [RegisteredKind(name="t.up", handler=upstream)], p)
    resilience = h.runtime.resilience
    async with anyio.create_task_group() as tg:
        await tg.start(h.executor.run)
        task_id = await h.enqueue("t.up")
        started = time.monotonic()
        done = await h.wait_for(task_id, TaskState.SUCCEEDED)
        h.executor.stop()
    # Two failures opened the breaker; the task waited for the probe instead of burning
    # its attempts, and the probe (third attempt) succeeded and closed the breaker.
    assert calls == [1, 2, 3]
    assert done.attempt == 3
    assert h.executor.statistics().postponed >= 1
    assert time.monotonic() - started >= 0.25
    breaker = resilience.task_breaker("t.up")
    assert breaker is not None
    assert breaker.state.value == "closed"


async def test_statistics_are_a_frozen_snapshot() -> None:
    release = anyio.Event()

    async def waits(ctx: TaskContext, payload: object) -> None:
        await release.wait()

    async with running({"t.waits": waits}) as h:
        task_id = await h.enqueue("t.waits")
        await h.wait_for(task_id, TaskState.RUNNING)
        with anyio.fail_after(5):
            while h.executor.running == 0:
                await anyio.sleep(0.005)
        before = h.executor.statistics()
        release.set()
        await h.wait_for(task_id, TaskState.SUCCEEDED)
        with anyio.fail_after(5):
            while h.executor.statistics().succeeded == 0:
                await anyio.sleep(0.005)
        after = h.executor.statistics()
    assert (before.running, before.claimed, before.succeeded) == (1, 1, 0)  # as it was then
    assert (after.running, after.claimed, after.succeeded) == (0, 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.succeeded = 2  # type: ignore[misc]
