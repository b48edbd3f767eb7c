-- gladd SQLite schema, version 4: flow control (issue 12): token buckets and pauses.
-- Applied by SQLiteStore.open() inside one BEGIN IMMEDIATE transaction.
--
-- No lock rows (PostgreSQL's gladd_limits): every write here is a BEGIN IMMEDIATE
-- transaction, so gated claims on one file are serialised by SQLite's write lock.
--
-- gladd_limit_tokens: the token bucket of each (gate, partition) with a rate: `tokens` left
-- at `at` (microseconds since the epoch). A bucket never stored is full.
--
-- gladd_pauses: an operator's brake (or a service's cooldown) on a target such as
-- `kind:NAME`, shared by every process on the file; `until` NULL: until resumed.

CREATE TABLE gladd_limit_tokens (
    gate   TEXT NOT NULL,
    part   TEXT NOT NULL,  -- the partition ('' for a gate without one)
    tokens REAL NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (gate, part)
) WITHOUT ROWID;

CREATE TABLE gladd_pauses (
    target     TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    until      INTEGER,
    by         TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
