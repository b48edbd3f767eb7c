"""The store a configuration asks for: URL from settings, tuning from ``[database]``."""

from __future__ import annotations

from gladd.policies import Policies
from gladd.store.base import Store
from gladd.store.factory import store_from_url

POSTGRES_SCHEMES = ("postgresql:", "postgres:")


def configured_store(url: str, policies: Policies) -> Store:
    """An unopened store for ``url``; raises ConfigError for an unsupported scheme."""
    if url.startswith(POSTGRES_SCHEMES):
        db = policies.database
        return store_from_url(
            url,
            query_timeout=db.query_timeout,
            pool_min_size=db.pool_min_size,
            pool_max_size=db.pool_max_size,
        )
    return store_from_url(url)
