"""The schedule enqueuer on real stores and a wall clock the test sets: catch-up after a
stopped daemon, overlap, nodes racing for a tick, live edits of the schedules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from gladd.executor.decide import scheduled_task
from gladd.maintenance.scheduler import Scheduler
from gladd.policies import Policies, parse_policies
from gladd.store import Succeeded, TaskState
from gladd.store.base import Store
from gladd.store.sqlite.store import SQLiteStore

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def policies(body: str) -> Policies:
    return parse_policies(body.encode(), source="policies.toml").policies


def every_minute(**keys: str) -> Policies:
    extra = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return policies(f'[schedules.sync]\nevery = "1m"\nkind = "gladd.noop"\n{extra}')


class Node:
    """One node's scheduler over ``store``, its wall clock set by the test."""

    def __init__(self, store: Store, rules: Policies) -> None:
        self.store = store
        self.rules = rules
        self.now = T0
        self.ticks: list[tuple[str, str, int]] = []
        self.scheduler = Scheduler(
            store=store,
            policies=lambda: self.rules,
            now=lambda: self.now,
            make_task=lambda *tick: scheduled_task(self.rules, *tick),
            on_ticks=lambda *counted: self.ticks.append(counted),
        )

    async def at(self, moment: datetime) -> float:
        self.now = moment
        return await self.scheduler.pass_once()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "gladd.db")
    await opened.open()
    yield opened
    await opened.close()


async def scheduled(store: Store) -> list[datetime]:
    return sorted(t.scheduled_for for t in await store.list(limit=1000) if t.scheduled_for)


async def test_a_new_schedule_starts_at_its_next_tick_never_in_the_past(store: SQLiteStore) -> None:
    node = Node(store, every_minute())
    wait = await node.at(T0 + timedelta(seconds=30))
    assert await scheduled(store) == []
    assert wait == pytest.approx(30.0)
    await node.at(T0 + timedelta(seconds=60, milliseconds=5))
    assert await scheduled(store) == [T0 + timedelta(minutes=1)]
    (task,) = await store.list()
    assert (task.kind, task.schedule, task.run_at) == (
        "gladd.noop",
        "sync",
        T0 + timedelta(minutes=1),
    )


@pytest.mark.parametrize(
    ("catch_up", "fired", "counted"),
    [
        ('"latest"', [10], {"caught_up": 1, "skipped": 9}),
        ('"all"', list(range(1, 11)), {"caught_up": 10}),
        ('"none"', [], {"skipped": 10}),
    ],
)
async def test_after_a_stopped_daemon_the_catch_up_rule_decides(
    store: SQLiteStore, catch_up: str, fired: list[int], counted: dict[str, int]
) -> None:
    node = Node(store, every_minute(catch_up=catch_up, overlap='"allow"'))
    await node.at(T0)  # seen at T0: starts from there
    # Stopped for ten minutes and 45 s; then one look (the 10th tick is 45 s late: not on
    # time, which is 30 s at most).
    await node.at(T0 + timedelta(minutes=10, seconds=45))
    assert await scheduled(store) == [T0 + timedelta(minutes=m) for m in fired]
    totals: dict[str, int] = {}
    for _, outcome, count in node.ticks:
        totals[outcome] = totals.get(outcome, 0) + count
    assert totals == counted


async def test_ticks_older_than_the_window_are_never_run_late(store: SQLiteStore) -> None:
    node = Node(store, every_minute(catch_up='"all"', catch_up_window='"3m"', overlap='"allow"'))
    await node.at(T0)
    await node.at(T0 + timedelta(minutes=10))
    assert await scheduled(store) == [T0 + timedelta(minutes=m) for m in (7, 8, 9, 10)]


async def test_overlap_skip_passes_over_a_tick_while_the_last_run_is_unfinished(
    store: SQLiteStore,
) -> None:
    node = Node(store, every_minute(overlap='"skip"'))
    await node.at(T0)
    await node.at(T0 + timedelta(minutes=1))
    (first,) = await store.claim(worker="w", limit=1, now=T0 + timedelta(minutes=1))
    await node.at(T0 + timedelta(minutes=2))  # still running: skipped
    assert await scheduled(store) == [T0 + timedelta(minutes=1)]
    assert ("sync", "skipped", 1) in node.ticks
    await store.finish([Succeeded(id=first.id, token=first.token)], now=T0 + timedelta(minutes=2))
    await node.at(T0 + timedelta(minutes=3))
    assert await scheduled(store) == [T0 + timedelta(minutes=m) for m in (1, 3)]


async def test_two_nodes_looking_at_the_same_moment_enqueue_a_tick_once(tmp_path: Path) -> None:
    stores = [SQLiteStore(tmp_path / "gladd.db") for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        rules = every_minute(overlap='"allow"')
        nodes = [Node(s, rules) for s in stores]
        for node in nodes:
            await node.at(T0)
        for minute in range(1, 6):
            async with anyio.create_task_group() as tg:
                for node in nodes:
                    tg.start_soon(node.at, T0 + timedelta(minutes=minute))
            for node in nodes:  # a loser looks again at once
                await node.at(T0 + timedelta(minutes=minute))
        assert await scheduled(stores[0]) == [T0 + timedelta(minutes=m) for m in range(1, 6)]
    finally:
        for s in stores:
            await s.close()


async def test_edits_take_effect_live(store: SQLiteStore) -> None:
    node = Node(store, every_minute(overlap='"allow"'))
    await node.at(T0)
    await node.at(T0 + timedelta(minutes=1))
    # A changed expression: the next tick is recomputed from now, nothing fired for the past.
    node.rules = policies(
        '[schedules.sync]\nevery = "1h"\nkind = "gladd.noop"\noverlap = "allow"\n'
    )
    await node.at(T0 + timedelta(minutes=2))
    assert await scheduled(store) == [T0 + timedelta(minutes=1)]
    await node.at(T0 + timedelta(hours=1))
    assert await scheduled(store) == [T0 + timedelta(minutes=1), T0 + timedelta(hours=1)]
    # Paused: not looked at; removed: fires no more and its row is forgotten.
    node.rules = policies('[schedules.sync]\nevery = "1h"\nkind = "gladd.noop"\npaused = true\n')
    await node.at(T0 + timedelta(hours=2))
    node.rules = policies('[schedules.other]\nevery = "1h"\nkind = "gladd.noop"\n')
    await node.at(T0 + timedelta(hours=3))
    assert len(await scheduled(store)) == 2
    assert set(await store.schedule_states()) == {"other"}


async def test_a_dead_last_run_is_what_health_reads(store: SQLiteStore) -> None:
    node = Node(store, every_minute())
    await node.at(T0)
    await node.at(T0 + timedelta(minutes=1))
    (task,) = await store.claim(worker="w", limit=1, now=T0 + timedelta(minutes=1))
    from gladd.store import Failed, TaskError  # noqa: PLC0415

    error = TaskError(type="E", message="boom", attempt=1, at=T0)
    await store.finish([Failed(id=task.id, token=task.token, error=error, retry_at=None)], now=T0)
    await node.at(T0 + timedelta(minutes=1, seconds=1))
    assert node.scheduler.states["sync"].last_state is TaskState.DEAD
