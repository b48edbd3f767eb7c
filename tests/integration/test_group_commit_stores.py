"""Group commit on every store: concurrent enqueues through the task service share
transactions, every one of them is stored, and unique keys hold inside a group."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.executor.service import TaskService
from gladd.policies import Policies
from gladd.store import Store, TaskState
from tests.integration.test_store_contract import MAKERS, make_store

pytestmark = pytest.mark.anyio


@pytest.fixture
async def service(backend: tuple[str, str], anyio_backend: str) -> AsyncIterator[TaskService]:
    store: Store = make_store(backend)
    await store.open()
    await MAKERS[backend[0]].empty(backend[1])
    policies = Policies()
    try:
        yield TaskService(store, KindRegistry(builtin_kinds()), lambda: policies)
    finally:
        await store.close()


async def test_concurrent_enqueues_share_transactions_and_all_are_stored(
    service: TaskService, backend: tuple[str, str]
) -> None:
    ids: list[int] = []

    async def one(n: int) -> None:
        ids.append((await service.enqueue("gladd.noop", {"n": n})).id)

    async with anyio.create_task_group() as tg:
        for n in range(60):
            tg.start_soon(one, n)
    assert len(set(ids)) == 60
    assert (await service.store.counts())[TaskState.PENDING] == 60
    if backend[0] != "memory":  # its enqueue never waits: nothing arrives during a write
        assert service.group.writes < 60  # grouped: fewer transactions than enqueues


async def test_a_unique_key_holds_inside_one_group(service: TaskService) -> None:
    results = []

    async def one() -> None:
        results.append(await service.enqueue("gladd.noop", {}, unique_key="order-17"))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)
    assert sum(e.created for e in results) == 1
    assert len({e.id for e in results}) == 1
