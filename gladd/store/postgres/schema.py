"""The PostgreSQL schema's versions: ``postgres/sql/NNNN_*.sql`` files, applied under a
transaction-scoped advisory lock so nodes starting together migrate exactly once."""

from __future__ import annotations

from typing import Any

from loguru import logger

from gladd.errors import StoreError
from gladd.store.sqlfiles import load_migrations

MIGRATION_LOCK = 0x676C61646401  # "glad" "d" 1: pg_advisory_xact_lock key of migrations
MIGRATION_TIMEOUT = 60.0  # a node may wait this long for another's migration (the lock)

MIGRATIONS = load_migrations("gladd.store.postgres")
LATEST = MIGRATIONS[-1][0]


async def apply_migrations(conn: Any, *, url: str, timeout: float) -> tuple[int, ...]:
    """Apply the migrations the database at ``url`` lacks: their versions."""
    applied: list[int] = []
    async with conn.transaction():
        # Serialises nodes starting together; released at commit or rollback.
        wait = max(MIGRATION_TIMEOUT, timeout)
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK, timeout=wait)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS gladd_migrations ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM gladd_migrations")}
        newest = max(done, default=0)
        if newest > LATEST:
            raise StoreError(
                f"the database at {url} has schema version {newest}, newer than this "
                f"gladd knows (up to {LATEST}): a newer gladd migrated it; upgrade gladd "
                "on this node, or point it at another database"
            )
        for version, script in MIGRATIONS:
            if version not in done:
                await conn.execute(script, timeout=wait)
                await conn.execute("INSERT INTO gladd_migrations (version) VALUES ($1)", version)
                applied.append(version)
    for version in applied:
        logger.info("PostgreSQL store {}: applied schema migration {}", url, version)
    return tuple(applied)
