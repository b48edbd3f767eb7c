"""A handler that blocks the event loop (a synchronous call in async code, the origin app's
first critical bug) is measured and named: task kind, plugin, file and line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import anyio
import pytest
from loguru import logger

from gladd.executor.kinds import KindRegistry, RegisteredKind, TaskContext
from gladd.executor.runner import Executor
from gladd.instruments.activity import activities
from gladd.policies import Policies
from gladd.store.base import NewTask
from gladd.store.memory import MemoryStore
from tests.unit.observe._build import Observed

pytestmark = pytest.mark.anyio

POLICIES = Policies.model_validate(
    {"event_loop": {"interval": "20ms", "lag_threshold": "50ms"}, "executor": {"heartbeat": "1s"}}
)
BLOCKING_LINE = 0


async def blocking_handler(ctx: TaskContext | None = None, payload: object = None) -> None:
    global BLOCKING_LINE  # noqa: PLW0603 - where the test expects the blame
    BLOCKING_LINE = blocking_handler.__code__.co_firstlineno + 3
    time.sleep(0.3)  # the bug: a synchronous call on the event loop


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    yield lines
    logger.remove(sink)


async def until(predicate: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def blocked(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("event loop blocked")]


async def test_the_blocking_handler_is_named_with_its_line(warnings: list[str]) -> None:
    store = MemoryStore()
    observed = Observed(store=store, policies=POLICIES)
    async with anyio.create_task_group() as tg:
        await tg.start(observed.lag.run)
        await anyio.sleep(0.05)
        await activities.track(
            "task", "demo.block", blocking_handler(), detail="task 7, plugin demo"
        )
        await until(lambda: blocked(warnings), "a lag warning")
        tg.cancel_scope.cancel()

    (line,) = blocked(warnings)
    assert line.startswith("event loop blocked for ")
    lag_ms = float(line.split(" for ", 1)[1].split("ms", 1)[0])
    assert 200 <= lag_ms <= 600
    assert (
        f"by task demo.block (task 7, plugin demo), at {__file__}:{BLOCKING_LINE} in "
        "blocking_handler" in line
    )
    assert observed.lag.blocks == {"demo.block": 1}

    observed.checker.check_local()
    lag = observed.board.report()["checks"]["eventloop:lag"][0]
    assert lag["status"] == "warn"
    assert lag["observedValue"] >= 200
    body, _ = observed.metrics.render()
    assert b'gladd_event_loop_blocks_total{kind="demo.block"} 1.0' in body


async def test_a_quiet_loop_stays_under_the_threshold(warnings: list[str]) -> None:
    observed = Observed(store=MemoryStore(), policies=POLICIES)
    async with anyio.create_task_group() as tg:
        await tg.start(observed.lag.run)
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    assert blocked(warnings) == []
    assert observed.lag.histogram.count >= 5
    assert observed.lag.take_peak() < 0.05


async def test_the_executor_names_the_kind_it_was_running(warnings: list[str]) -> None:
    store = MemoryStore()
    await store.open()
    kinds = KindRegistry(
        [RegisteredKind(name="demo.block", handler=blocking_handler, plugin="demo")]
    )
    executor = Executor(store=store, kinds=kinds, policies=lambda: POLICIES, worker_id="w1")
    observed = Observed(store=store, policies=POLICIES)
    async with anyio.create_task_group() as tg:
        await tg.start(observed.lag.run)
        await tg.start(executor.run)
        await store.enqueue(NewTask(kind="demo.block"), now=datetime.now(UTC))
        await until(lambda: blocked(warnings), "a lag warning")
        executor.stop()
        tg.cancel_scope.cancel()
    (line,) = blocked(warnings)
    assert "by task demo.block (" in line
    assert f"{__file__}:{BLOCKING_LINE} in blocking_handler" in line
