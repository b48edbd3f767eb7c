"""The PostgreSQL store, shared by many nodes (:mod:`gladd.store.postgres.store`).

Only the :data:`BACKEND` entry lives here, so the registry lists this store (and the
resilience classifier learns its driver's transient errors) without importing asyncpg:
SQLite users never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gladd.store.base import Backend, Store, StoreGuard

if TYPE_CHECKING:
    from gladd.policies.model import DatabasePolicy


def _make(url: str, **options: Any) -> Store:
    from gladd.store.postgres.store import PostgresStore  # noqa: PLC0415 - asyncpg when chosen

    return PostgresStore(url, **options)


def _tuning(database: DatabasePolicy, guard: StoreGuard | None) -> dict[str, Any]:
    return {
        "query_timeout": database.query_timeout,
        "pool_min_size": database.pool_min_size,
        "pool_max_size": database.pool_max_size,
        "guard": guard,
    }


BACKEND = Backend(
    name="postgresql",
    schemes=("postgresql", "postgres"),
    form="postgresql://USER@HOST/DB",
    make=_make,
    tuning=_tuning,
    enqueue_only={"listen_for_work": False},
    transient={
        "asyncpg.exceptions.CannotConnectNowError": "connect",
        "asyncpg.exceptions.TooManyConnectionsError": "connect",
        "asyncpg.exceptions.ConnectionFailureError": "connect",
        "asyncpg.exceptions.ConnectionDoesNotExistError": "reset",
        "asyncpg.exceptions.QueryCanceledError": "timeout",
    },
)
