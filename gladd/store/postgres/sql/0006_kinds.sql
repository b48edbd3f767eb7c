-- gladd PostgreSQL schema, version 6: the kinds catalogue (issue 15). It depends on no
-- other migration after 0001: versions are applied by number, whichever are missing.
--
-- gladd_kinds: the task kinds each node serves, published by the daemon at start, with the
-- payload's JSON Schema (NULL: any JSON) for clients that validate without plugin code.
-- A node's publication replaces all its rows in one transaction; clients read them all.

CREATE TABLE gladd_kinds (
    name           text NOT NULL,
    node           text NOT NULL,
    plugin         text NOT NULL,
    description    text NOT NULL,
    payload_schema jsonb,
    services       text[] NOT NULL,
    published_at   timestamptz NOT NULL,
    PRIMARY KEY (name, node)
);
