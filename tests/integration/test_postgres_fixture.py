"""The PostgreSQL fixture gives each run a real, empty database of its own."""

from __future__ import annotations

import asyncpg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


async def test_each_run_gets_its_own_empty_database(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    assert name.startswith("gladd_test_")
    assert tables == 0
