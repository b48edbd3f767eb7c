-- gladd PostgreSQL schema, version 9: counts of tasks by kind and state (issue 14).
-- Applied by PostgresStore.open() inside one transaction holding the migration advisory lock.
-- It depends on no other migration after 0001: versions are applied by number.
--
-- gladd_task_counts: signed deltas of how many tasks each (kind, state) has; the sum per
-- (kind, state) is the count. Statement triggers with transition tables append one row per
-- (kind, state) a statement changed: every insert (plain SQL too), update and delete. Rows
-- are only appended, never updated, so workers finishing tasks together do not queue on a
-- counter row's lock. A read folds the deltas into one row per (kind, state) (query
-- `task_stats`): the table stays about as small as the number of kinds times states plus
-- what changed since the last read.

CREATE TABLE gladd_task_counts (
    kind  text NOT NULL,
    state text NOT NULL,
    n     bigint NOT NULL
);

CREATE FUNCTION gladd_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gladd_task_counts (kind, state, n)
    SELECT kind, state, count(*) FROM inserted GROUP BY kind, state;
    RETURN NULL;
END;
$$;

CREATE FUNCTION gladd_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gladd_task_counts (kind, state, n)
    SELECT kind, state, -count(*) FROM deleted GROUP BY kind, state;
    RETURN NULL;
END;
$$;

-- Most updates (a heartbeat's, progress, a claim's deadline) change neither kind nor
-- state: their -1 and +1 cancel out and nothing is inserted. No join of the two tables
-- (a transition table cannot name columns, so every update comes here): one pass each.
CREATE FUNCTION gladd_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gladd_task_counts (kind, state, n)
    SELECT kind, state, sum(d) FROM (
        SELECT kind, state, -1 AS d FROM deleted
        UNION ALL
        SELECT kind, state, 1 FROM inserted
    ) AS moves
    GROUP BY kind, state
    HAVING sum(d) <> 0;
    RETURN NULL;
END;
$$;

CREATE FUNCTION gladd_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM gladd_task_counts;
    RETURN NULL;
END;
$$;

CREATE TRIGGER gladd_task_counts_insert AFTER INSERT ON gladd_tasks
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION gladd_count_inserted();

CREATE TRIGGER gladd_task_counts_delete AFTER DELETE ON gladd_tasks
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION gladd_count_deleted();

CREATE TRIGGER gladd_task_counts_update AFTER UPDATE ON gladd_tasks
    REFERENCING OLD TABLE AS deleted NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION gladd_count_updated();

CREATE TRIGGER gladd_task_counts_truncate AFTER TRUNCATE ON gladd_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION gladd_count_truncated();

-- After the triggers: creating them locked out every writer of gladd_tasks until commit,
-- so no change falls between this count and the first delta.
INSERT INTO gladd_task_counts (kind, state, n)
SELECT kind, state, count(*) FROM gladd_tasks GROUP BY kind, state;
