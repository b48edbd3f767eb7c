"""The embedded default store: one SQLite file (:mod:`gladd.store.sqlite.store`).

Only the :data:`BACKEND` entry lives here, so the registry lists this store without
loading it; the store's modules are imported when a ``sqlite:///`` URL is opened.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from gladd.errors import ConfigError
from gladd.store.base import Backend, Store

_PREFIX = "sqlite:///"


def _make(url: str, **options: Any) -> Store:
    from gladd.store.sqlite.store import SQLiteStore  # noqa: PLC0415 - imported when chosen

    return SQLiteStore(_path(url), **options)


def _path(url: str) -> str:
    if not url.lower().startswith(_PREFIX):
        raise ConfigError(
            f"store URL {url!r}: a SQLite URL is sqlite:/// followed by the file's path "
            "(sqlite:///relative.db, sqlite:////absolute/path.db)"
        )
    path = unquote(url[len(_PREFIX) :].split("?", 1)[0])
    if not path or path.endswith("/"):
        raise ConfigError(f"store URL {url!r} names no database file after sqlite:///")
    return path


BACKEND = Backend(name="sqlite", schemes=("sqlite",), form="sqlite:///PATH", make=_make)
