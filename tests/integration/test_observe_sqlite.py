"""SQLite has one connection, not a pool: reported as it is, and no pool alerts apply."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gladd.policies import Policies
from gladd.store.sqlite.store import SQLiteStore
from tests.unit.observe._build import Observed

pytestmark = pytest.mark.anyio


def gauge(observed: Observed, name: str, **labels: str) -> float:
    body, _ = observed.metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(name)


async def test_sqlite_is_reported_as_the_single_connection_it_is(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "gladd.db")
    await store.open()
    try:
        observed = Observed(store=store, policies=Policies())
        observed.pool.sample()
        await observed.checker.check()
        checks = observed.board.report()["checks"]
        assert checks["database:connections"][0]["output"] == (
            "sqlite: one connection, not a pool (idle, 0 queued)"
        )
        assert checks["pool:alerts"][0]["output"] == (
            "sqlite has no pool: pool alert rules do not apply"
        )
        assert gauge(observed, "gladd_db_pool_max_size") == 1
        assert gauge(observed, "gladd_db_info", backend="sqlite") == 1
        assert observed.board.report()["status"] == "pass"
    finally:
        await store.close()


async def test_a_busy_sqlite_store_counts_queued_statements(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "gladd.db")
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(store.counts)
            await anyio.sleep(0)
            stats = store.pool_stats()
            assert (stats.in_use, stats.waiting, stats.idle) == (1, 2, 0)
        assert store.pool_stats().in_use == 0
    finally:
        await store.close()
