"""Operators' breaker overrides in every store: stored, listed, replaced, reset, and
announced (the pause epoch moves) to this store's readers and, on PostgreSQL, every node's."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from gladd.store import Store
from gladd.store.gates import BreakerOverride
from gladd.store.postgres.store import PostgresStore
from gladd.store.sqlite.store import SQLiteStore
from tests.integration.test_store_contract import BASE
from tests.integration.test_store_flow_nodes import epoch_moves, fresh_database

pytestmark = pytest.mark.anyio


def override(name: str, by: str = "127.0.0.1 (no token)", at: float = 0) -> BreakerOverride:
    return BreakerOverride(name=name, by=by, created_at=BASE + timedelta(seconds=at))


async def test_overrides_are_stored_listed_replaced_and_reset(store: Store) -> None:
    assert await store.breaker_overrides() == []
    epoch = store.pause_epoch
    assert await store.isolate_breaker(override("up:b")) == override("up:b")
    assert store.pause_epoch != epoch, "a reader must learn of the isolation"
    await store.isolate_breaker(override("up:a"))
    assert [o.name for o in await store.breaker_overrides()] == ["up:a", "up:b"]
    # Isolating again replaces who and when.
    again = override("up:a", by="10.0.0.2 (with token)", at=60)
    await store.isolate_breaker(again)
    assert await store.breaker_overrides() == [again, override("up:b")]
    assert all(o.state == "isolated" for o in await store.breaker_overrides())
    epoch = store.pause_epoch
    assert await store.reset_breaker("up:a") == again
    assert store.pause_epoch != epoch
    assert await store.reset_breaker("up:a") is None
    assert await store.breaker_overrides() == [override("up:b")]


async def test_override_times_come_back_in_utc_and_must_be_aware(store: Store) -> None:
    east = BASE.astimezone(timezone(timedelta(hours=2)))
    await store.isolate_breaker(BreakerOverride(name="up:a", by="x", created_at=east))
    (stored,) = await store.breaker_overrides()
    assert stored.created_at == BASE
    assert stored.created_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.isolate_breaker(
            BreakerOverride(name="up:b", by="x", created_at=BASE.replace(tzinfo=None))
        )


@pytest.mark.postgres
async def test_an_isolation_on_one_node_moves_every_nodes_epoch(postgres_url: str) -> None:
    async with fresh_database(postgres_url) as url, AsyncExitStack() as stack:
        a, b = PostgresStore(url), PostgresStore(url)
        for node in (a, b):
            await node.open()
            stack.push_async_callback(node.close)
        epoch = a.pause_epoch
        await b.isolate_breaker(override("up:up"))
        assert await epoch_moves(a, epoch, within=2) < 1
        assert await a.breaker_overrides() == [override("up:up")]
        epoch = a.pause_epoch
        await b.reset_breaker("up:up")
        assert await epoch_moves(a, epoch, within=2) < 1
        assert await a.breaker_overrides() == []


async def test_another_sqlite_store_sees_an_isolation(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    async with AsyncExitStack() as stack:
        daemon, cli = SQLiteStore(path), SQLiteStore(path)
        for node in (daemon, cli):
            await node.open()
            stack.push_async_callback(node.close)
        await cli.isolate_breaker(override("up:up"))
        assert await daemon.breaker_overrides() == [override("up:up")]
