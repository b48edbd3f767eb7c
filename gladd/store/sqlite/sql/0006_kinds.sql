-- gladd SQLite schema, version 6: the kinds catalogue (issue 15).
-- Applied by SQLiteStore.open() inside one BEGIN IMMEDIATE transaction. It depends on no
-- other migration after 0001: versions are applied by number, whichever are missing.
--
-- gladd_kinds: the task kinds each node serves, published by the daemon at start, with the
-- payload's JSON Schema (NULL: any JSON) for clients that validate without plugin code.
-- A node's publication replaces all its rows; `published_at` in microseconds since the epoch.

CREATE TABLE gladd_kinds (
    name           TEXT NOT NULL,
    node           TEXT NOT NULL,
    plugin         TEXT NOT NULL,
    description    TEXT NOT NULL,
    payload_schema TEXT,
    services       TEXT NOT NULL,  -- a JSON array of names
    published_at   INTEGER NOT NULL,
    PRIMARY KEY (name, node)
) WITHOUT ROWID;
