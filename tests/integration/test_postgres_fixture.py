"""The PostgreSQL fixture gives each run a real database of its own."""

from __future__ import annotations

import asyncpg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


async def test_each_run_gets_its_own_database(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        others = await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await conn.close()
    assert name.startswith("gladd_test_")
    assert postgres_url.endswith(f"/{name}")
    assert others == 1
