"""Pick a store by URL, and mask the URL's password for logs.

=====================================  ==============================================
``memory://``                          :class:`~gladd.store.memory.MemoryStore`
``sqlite:///relative/path.db``         :class:`~gladd.store.sqlite.store.SQLiteStore`, relative
                                       to the working directory
``sqlite:////absolute/path.db``        the same, absolute (four slashes: the path's own)
``postgresql://USER:PASS@HOST/DB``     :class:`~gladd.store.postgres.store.PostgresStore`
``postgres://...``                     the same
=====================================  ==============================================

The SQLite form follows SQLAlchemy's: everything after ``sqlite:///`` is the path, so the
default ``sqlite:///{state_dir}/gladd.db`` of an absolute state directory has four slashes.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from gladd.errors import ConfigError
from gladd.store.base import Store

__all__ = ["mask_url", "store_from_url"]

_SQLITE_PREFIX = "sqlite:///"
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)
_HINT = "use sqlite:///PATH, postgresql://USER@HOST/DB or memory://"


def store_from_url(url: str, **options: Any) -> Store:
    """An unopened store for ``url``; ``options`` go to its constructor.

    Raises :class:`~gladd.errors.ConfigError` for a URL no store accepts.
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "memory":
        from gladd.store.memory import MemoryStore  # noqa: PLC0415 - imported when chosen

        if url.rstrip("/") != "memory:":
            raise ConfigError(f"store URL {url!r}: memory:// takes no host, path or query")
        return MemoryStore(**options)
    if scheme == "sqlite":
        from gladd.store.sqlite.store import SQLiteStore  # noqa: PLC0415 - imported when chosen

        return SQLiteStore(_sqlite_path(url), **options)
    if scheme in ("postgresql", "postgres"):
        # Imported only when asked for, so SQLite users never load asyncpg.
        from gladd.store.postgres.store import PostgresStore  # noqa: PLC0415

        return PostgresStore(url, **options)
    shown = mask_url(url)
    if not scheme:
        raise ConfigError(f"store URL {shown!r} has no scheme: {_HINT}")
    raise ConfigError(f"store URL {shown!r} has an unsupported scheme {scheme!r}: {_HINT}")


def _sqlite_path(url: str) -> str:
    if not url.lower().startswith(_SQLITE_PREFIX):
        raise ConfigError(
            f"store URL {url!r}: a SQLite URL is sqlite:/// followed by the file's path "
            "(sqlite:///relative.db, sqlite:////absolute/path.db)"
        )
    path = unquote(url[len(_SQLITE_PREFIX) :].split("?", 1)[0])
    if not path or path.endswith("/"):
        raise ConfigError(f"store URL {url!r} names no database file after sqlite:///")
    return path


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe to log and show."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed netloc (e.g. a bad port): hide everything before @
        head, sep, tail = url.rpartition("@")
        return f"{head.split('://', 1)[0]}://***@{tail}" if sep else url
    if password is None and "password=" not in parts.query:
        return url  # unchanged: urlunsplit would normalise e.g. sqlite:/// away
    if password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{hostinfo}")
    if "password=" in parts.query:  # libpq-style ?password=... (asyncpg accepts it)
        parts = parts._replace(query=_QUERY_PASSWORD.sub(r"\1***", parts.query))
    return urlunsplit(parts)
