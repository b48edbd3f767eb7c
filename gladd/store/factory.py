"""Pick a store by URL (the schemes are those of :mod:`gladd.store.registry`).

=====================================  ==============================================
``memory://``                          :class:`~gladd.store.memory.MemoryStore`
``sqlite:///relative/path.db``         :class:`~gladd.store.sqlite.store.SQLiteStore`,
                                       relative to the working directory
``sqlite:////absolute/path.db``        the same, absolute (four slashes: the path's own)
``postgresql://USER:PASS@HOST/DB``     :class:`~gladd.store.postgres.store.PostgresStore`
``postgres://...``                     the same
=====================================  ==============================================

The SQLite form follows SQLAlchemy's: everything after ``sqlite:///`` is the path, so the
default ``sqlite:///{state_dir}/gladd.db`` of an absolute state directory has four slashes.
"""

from __future__ import annotations

from typing import Any

from gladd.store.base import Store
from gladd.store.registry import backend_for


def store_from_url(url: str, **options: Any) -> Store:
    """An unopened store for ``url``; ``options`` go to its constructor.

    Raises :class:`~gladd.errors.ConfigError` for a URL no store accepts.
    """
    return backend_for(url).make(url, **options)
