"""The real PostgreSQL pool, exhausted by connections held on a lock, then given back:
utilisation and acquire wait go critical after their `for`, health fails, and recovery
is logged once the connections return."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import asyncpg
import pytest
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from gladd.observe.pool import Level
from gladd.policies import Policies
from gladd.store.postgres.store import PostgresStore
from tests.unit.observe._build import Observed

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

POLICIES = Policies.model_validate(
    {
        "pool_alerts": {
            "interval": "25ms",
            "utilization": {"warn": 0.5, "critical": 1.0, "for": "200ms"},
            "acquire_wait": {"warn": "50ms", "critical": "150ms", "for": "200ms"},
        }
    }
)


@pytest.fixture
def logs() -> Iterator[list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])))
    yield lines
    logger.remove(sink)


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    name = f"gladd_observe_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await anyio.sleep(0.01)


def gauge(observed: Observed, name: str, **labels: str) -> float:
    body, _ = observed.metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(name)


async def test_exhausted_pool_pages_after_its_for_and_recovers(
    database: str, logs: list[tuple[str, str]]
) -> None:
    store = PostgresStore(database, query_timeout=10, pool_min_size=1, pool_max_size=2)
    await store.open()
    observed = Observed(store=store, policies=POLICIES)
    locker: Any = await asyncpg.connect(database)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(observed.pool.run)
            await observed.checker.check()
            assert observed.board.report()["status"] == "pass"

            # Another client holds the table: every store query on it waits, holding its
            # pooled connection, and a third caller waits for a connection at all.
            tx = locker.transaction()
            await tx.start()
            await locker.execute("LOCK TABLE gladd_tasks IN ACCESS EXCLUSIVE MODE")
            for _ in range(3):
                tg.start_soon(store.list)  # reads gladd_tasks (counts read their own table)
            await until(lambda: store.pool_stats().waiting == 1, "a caller waiting")
            held_since = time.monotonic()
            alerts = observed.pool.alerts
            await until(lambda: alerts.level("utilization") is Level.CRITICAL, "critical")
            assert time.monotonic() - held_since >= 0.15  # no page before `for`
            await until(lambda: alerts.level("acquire_wait") is Level.CRITICAL, "wait critical")

            observed.checker.check_local()  # the ping would wait for a connection too
            pool = observed.board.report()["checks"]["pool:alerts"][0]
            assert pool["status"] == "fail"
            assert pool["output"].startswith("utilization critical (100%), acquire_wait critical")
            assert observed.board.report()["checks"]["database:connections"][0]["output"] == (
                "postgresql pool: 2 in use, 0 idle, size 2 of max 2, 1 waiting"
            )
            assert gauge(observed, "gladd_db_pool_critical") == 1
            assert gauge(observed, "gladd_db_pool_utilization_ratio") == 1.0

            await tx.rollback()
            await until(lambda: alerts.level() is Level.OK, "recovery")
            await observed.checker.check()
            assert observed.board.report()["status"] == "pass"
            assert gauge(observed, "gladd_db_pool_critical") == 0
            assert (
                gauge(observed, "gladd_db_pool_alerts_total", rule="utilization", level="critical")
                == 1
            )
            tg.cancel_scope.cancel()
    finally:
        await locker.close()
        await store.close()

    pool_lines = [(level, text) for level, text in logs if text.startswith("pool ")]
    levels = [level for level, _ in pool_lines]
    assert levels.count("ERROR") == 2  # utilisation and acquire wait went critical
    assert any(
        text.startswith("pool utilisation back to normal: 0% < warn 50%") for _, text in pool_lines
    )
    assert any(text.startswith("pool acquire wait back to normal") for _, text in pool_lines)
    assert pool_lines[-1][0] == "INFO"
    assert "at postgresql://postgres@127.0.0.1:5432/gladd_observe_" in pool_lines[0][1]
