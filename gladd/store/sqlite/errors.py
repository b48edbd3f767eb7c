"""SQLite errors as one precise :class:`~gladd.errors.StoreError`; the message names the file.

A database locked past the busy timeout is :class:`~gladd.errors.StoreUnavailable` (it
passes); a file that is not a database, or a corrupt one, is
:class:`~gladd.errors.StoreUnusable` (it does not: the daemon refuses to start on it rather
than retrying forever).
"""

from __future__ import annotations

import sqlite3

from gladd.errors import StoreError, StoreUnavailable, StoreUnusable


def map_error(exc: sqlite3.Error, path: str) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreUnavailable(
            f"SQLite database {path} stayed locked by another connection past the busy "
            f"timeout: {exc}"
        )
    primary = code & 0xFF if isinstance(code, int) else None  # SQLITE_CORRUPT_INDEX → CORRUPT
    if primary == sqlite3.SQLITE_NOTADB:
        return StoreUnusable(
            f"{path} is not a SQLite database (or is encrypted): {exc}; point the database "
            "URL at gladd's database, or move this file away to start a new one"
        )
    if primary == sqlite3.SQLITE_CORRUPT:
        return StoreUnusable(
            f"SQLite database {path} is corrupt: {exc}; restore it from a backup (or try "
            "`sqlite3 FILE .recover`), or move it away to start a new one"
        )
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
        return StoreError(
            f"SQLite database {path} cannot be written: {exc}; check the file's and its "
            "directory's permissions"
        )
    return StoreError(f"SQLite database {path}: {exc}")
