"""SQLite errors as one precise :class:`~gladd.errors.StoreError`: a database locked past
the busy timeout is :class:`~gladd.errors.StoreUnavailable`; the message names the file."""

from __future__ import annotations

import sqlite3

from gladd.errors import StoreError, StoreUnavailable


def map_error(exc: sqlite3.Error, path: str) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreUnavailable(
            f"SQLite database {path} stayed locked by another connection past the busy "
            f"timeout: {exc}"
        )
    if code == sqlite3.SQLITE_NOTADB:
        return StoreError(f"{path} is not a SQLite database (or is encrypted): {exc}")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return StoreError(
            f"SQLite database {path} cannot be written: {exc}; check the file's and its "
            "directory's permissions"
        )
    return StoreError(f"SQLite database {path}: {exc}")
