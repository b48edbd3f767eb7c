"""The SQLite schema's versions: ``sqlite/sql/NNNN_name.sql`` files, applied in one
transaction and recorded in ``gladd_migrations``; a file migrated by a newer gladd is refused."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache

from gladd.errors import StoreError
from gladd.store.sqlfiles import load_migrations
from gladd.store.sqlite.queries import Q
from gladd.store.sqlite.rows import to_us


@cache
def migrations() -> tuple[tuple[int, str], ...]:
    """(version, SQL text) of every migration this code knows, in order."""
    return load_migrations("gladd.store.sqlite")


def statements(script: str) -> Iterator[str]:
    """The statements of a SQL script, for running them inside our own transaction
    (``executescript`` would commit it)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    leftover = [ln for ln in pending.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    if leftover:
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending!r}")


def apply_migrations(conn: sqlite3.Connection, path: str) -> tuple[int, ...]:
    """Apply the migrations ``conn`` lacks, inside the caller's transaction: their versions."""
    conn.execute(Q["create_migrations_table"])
    done = {v for (v,) in conn.execute(Q["migration_versions"])}
    known = migrations()
    latest = known[-1][0]
    if done and max(done) > latest:
        raise StoreError(
            f"SQLite database {path} has schema version {max(done)}, but this gladd knows "
            f"versions up to {latest} only: upgrade gladd, or point it at another database"
        )
    applied = []
    for version, script in known:
        if version in done:
            continue
        for statement in statements(script):
            conn.execute(statement)
        conn.execute(Q["record_migration"], (version, to_us(datetime.now(UTC))))
        applied.append(version)
    return tuple(applied)
