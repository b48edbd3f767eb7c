-- gladd PostgreSQL schema, version 4: flow control (issue 12): gates and pauses.
--
-- gladd_limits: one row per gate name, created on first use, never holding data: its row
-- lock is the gate's lock. Every claim that may start a task of a gated kind locks the
-- rows of its gates (in name order: no deadlock) before it counts running tasks, and holds
-- them until it commits (the proof is in gladd/store/postgres/flow.py).
--
-- gladd_limit_tokens: the token bucket of each (gate, partition) with a rate: `tokens` left
-- at `at`. A bucket never stored is full; one untouched for long is full again, and swept.
--
-- gladd_pauses: an operator's brake (or a service's cooldown) on a target such as
-- `kind:NAME`, shared by every node; `until` NULL: until resumed.
--
-- No index beyond the keys: a gated claim reads running tasks through gladd_tasks_running
-- and candidates through gladd_tasks_claim, as plain claims do.

CREATE TABLE gladd_limits (
    name text PRIMARY KEY
);

CREATE TABLE gladd_limit_tokens (
    gate   text NOT NULL,
    part   text NOT NULL,  -- the partition ('' for a gate without one)
    tokens double precision NOT NULL,
    at     timestamptz NOT NULL,
    PRIMARY KEY (gate, part)
);

CREATE TABLE gladd_pauses (
    target     text PRIMARY KEY,
    reason     text NOT NULL,
    until      timestamptz,
    by         text NOT NULL,
    created_at timestamptz NOT NULL
);
