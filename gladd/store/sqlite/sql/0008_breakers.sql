-- gladd SQLite schema, version 8: operators' breaker overrides (issue 14). Applied by
-- SQLiteStore.open() inside one BEGIN IMMEDIATE transaction. It depends on no other
-- migration after 0001: versions are applied by number, whichever are missing.
--
-- gladd_breakers: a breaker (by its POLICY:TARGET name) an operator isolated, held open on
-- every daemon of the store until reset (which deletes the row). `state` is 'isolated', the
-- only override there is; `created_at` in microseconds since the epoch.

CREATE TABLE gladd_breakers (
    name       TEXT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state = 'isolated'),
    by         TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
