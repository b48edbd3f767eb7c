"""The SQLite schema's versions: ``sqlite/sql/NNNN_name.sql`` files, applied in one
transaction and recorded in ``gladd_migrations``; a file migrated by a newer gladd is refused."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files

from gladd.errors import StoreError
from gladd.store.sqlite.rows import to_us

_MIGRATION_FILE = re.compile(r"^(\d{4})_\w+\.sql$")


@cache
def migrations() -> tuple[tuple[int, str], ...]:
    """(version, SQL text) of every migration this code knows, in order."""
    folder = files("gladd.store.sqlite").joinpath("sql")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match[1]), entry.read_text(encoding="utf-8")))
    return tuple(sorted(found))


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
    conn.execute(
        "CREATE TABLE IF NOT EXISTS gladd_migrations "
        "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    done = {v for (v,) in conn.execute("SELECT version FROM gladd_migrations")}
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
        conn.execute(
            "INSERT INTO gladd_migrations (version, applied_at) VALUES (?, ?)",
            (version, to_us(datetime.now(UTC))),
        )
        applied.append(version)
    return tuple(applied)
