"""The store a configuration asks for: URL from settings, tuning from ``[database]``;
and the one ``[database]`` field a reload changes on an open store (``query_timeout``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gladd.policies import Policies
from gladd.store.base import Store
from gladd.store.factory import store_from_url

POSTGRES_SCHEMES = ("postgresql:", "postgres:")


def configured_store(
    url: str,
    policies: Policies,
    *,
    guard: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]] | None = None,
) -> Store:
    """An unopened store for ``url``; raises ConfigError for an unsupported scheme.

    ``guard`` wraps each PostgreSQL operation (the daemon passes the database guard: the
    ``[database]`` retry policy on connection errors)."""
    if url.startswith(POSTGRES_SCHEMES):
        db = policies.database
        return store_from_url(
            url,
            query_timeout=db.query_timeout,
            pool_min_size=db.pool_min_size,
            pool_max_size=db.pool_max_size,
            guard=guard,
        )
    return store_from_url(url)


def retune_store(store: Store, policies: Policies) -> None:
    """Apply the live ``[database]`` fields to an open store (the pool sizes and the URL
    need a restart). Only PostgreSQL has a query timeout to change."""
    from gladd.store.postgres import PostgresStore  # noqa: PLC0415 - asyncpg only when used

    if isinstance(store, PostgresStore):
        store.query_timeout = policies.database.query_timeout
