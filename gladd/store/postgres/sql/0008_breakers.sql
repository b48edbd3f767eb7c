-- gladd PostgreSQL schema, version 8: operators' breaker overrides (issue 14). It depends
-- on no other migration after 0001: versions are applied by number, whichever are missing.
--
-- gladd_breakers: a breaker (by its POLICY:TARGET name) an operator isolated, held open on
-- every node until reset (which deletes the row). `state` is 'isolated', the only override
-- there is. Every change is announced on channel gladd_pauses (payload "breaker:NAME"),
-- which each node's listener hears already.

CREATE TABLE gladd_breakers (
    name       text PRIMARY KEY,
    state      text NOT NULL CHECK (state = 'isolated'),
    by         text NOT NULL,
    created_at timestamptz NOT NULL
);
