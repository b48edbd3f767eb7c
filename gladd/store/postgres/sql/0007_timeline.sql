-- gladd PostgreSQL schema, version 7: each task's timeline and the start of its first
-- attempt (issue 14).
--
-- timeline is a jsonb array of entries (gladd/store/timeline.py), appended to by the very
-- statement that makes the change an entry records (queries.sql), through
-- gladd_timeline(timeline, entries), which keeps it bounded: the first 10 entries and the
-- last 40, those between counted by one {"event": "dropped", "count": N} entry at index 10.
-- It is gladd.store.timeline.bounded in SQL; the store contract suite holds the two to the
-- same answers. A column with a constant default rewrites nothing: instant on a large table.

ALTER TABLE gladd_tasks
    ADD COLUMN timeline jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN started_at timestamptz;

-- The bound, for a timeline past HEAD + TAIL entries (gladd_timeline below calls it).
CREATE OR REPLACE FUNCTION gladd_timeline_bounded(combined jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    head CONSTANT integer := 10;
    tail CONSTANT integer := 40;
    total integer := jsonb_array_length(combined);
    rest integer := head;  -- index of the first entry after the head (and its marker)
    earlier integer := 0;
    cut integer;
BEGIN
    IF total > head AND combined -> head ->> 'event' = 'dropped' THEN
        rest := head + 1;
        earlier := (combined -> head ->> 'count')::integer;
    END IF;
    cut := total - rest - tail;
    IF cut <= 0 THEN
        RETURN combined;
    END IF;
    RETURN coalesce((SELECT jsonb_agg(e ORDER BY i) FROM jsonb_array_elements(combined)
                     WITH ORDINALITY AS x(e, i) WHERE i <= head), '[]'::jsonb)
        || jsonb_build_array(jsonb_build_object(
               'at', combined -> (rest + cut - 1) -> 'at',
               'event', 'dropped', 'count', earlier + cut))
        || (SELECT jsonb_agg(e ORDER BY i) FROM jsonb_array_elements(combined)
            WITH ORDINALITY AS x(e, i) WHERE i > rest + cut);
END
$$;

-- A single-expression SQL function, inlined into the statements that call it: the common
-- case costs one concatenation. No statement appends more than 3 entries, so a timeline of
-- at most 47 cannot pass 50, where nothing is cut; a longer one takes the bound.
CREATE OR REPLACE FUNCTION gladd_timeline(timeline jsonb, entries jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_array_length(timeline) <= 47
                THEN timeline || entries
                ELSE gladd_timeline_bounded(timeline || entries) END
$$;

-- A time as the timeline writes it, whatever the session's TimeZone: ISO 8601 in UTC.
CREATE OR REPLACE FUNCTION gladd_iso(at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
$$;

-- A claim's entries (the claim, claim_kinds and gated_start queries): `claimed` by `node`
-- under the new `token`, and `attempt started`. `at` is text (ISO 8601) from the caller:
-- formatting the time per row cost a claim more than the rest of its timeline, and a plain
-- parameter lets this function be inlined too.
CREATE OR REPLACE FUNCTION gladd_claimed(
    timeline jsonb, node text, at text, token bigint, attempt integer
) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT gladd_timeline(timeline, jsonb_build_array(
        jsonb_build_object('at', at, 'event', 'claimed', 'node', node, 'token', token),
        jsonb_build_object('at', at, 'event', 'attempt started', 'attempt', attempt)))
$$;
