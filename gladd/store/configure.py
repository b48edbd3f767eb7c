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


def prepare_retune(store: Store, policies: Policies) -> Callable[[], None]:
    """What a reload changes on an open store (the pool sizes and the URL need a restart),
    checked now and applied by the returned commit, which cannot fail. Only PostgreSQL has
    a query timeout to change."""
    from gladd.store.postgres.store import PostgresStore  # noqa: PLC0415 - asyncpg only when used

    if not isinstance(store, PostgresStore):
        return _nothing
    seconds = policies.database.query_timeout
    if not seconds > 0:  # what the store's setter would refuse, refused before the commit
        raise ValueError(f"database.query_timeout must be longer than 0s (got {seconds})")

    def commit() -> None:
        store.query_timeout = seconds

    return commit


def retune_store(store: Store, policies: Policies) -> None:
    """Apply the live ``[database]`` fields to an open store at once."""
    prepare_retune(store, policies)()


def _nothing() -> None:
    pass
