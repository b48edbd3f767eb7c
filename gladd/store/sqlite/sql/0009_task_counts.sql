-- gladd SQLite schema, version 9: counts of tasks by kind and state (issue 14). Applied by
-- SQLiteStore.open() inside one BEGIN IMMEDIATE transaction. It depends on no other
-- migration after 0001: versions are applied by number, whichever are missing.
--
-- gladd_task_counts: how many tasks each (kind, state) has, kept by the triggers below on
-- every insert (plain SQL too), state or kind change and delete, in the writing
-- transaction: `gladd tasks stats` and the gauge read a few rows, not every task. One
-- writer holds the file at a time, so updating a row per change costs no contention.
-- A row whose count fell to 0 stays; readers skip it.

CREATE TABLE gladd_task_counts (
    kind  TEXT NOT NULL,
    state TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (kind, state)
) WITHOUT ROWID;

INSERT INTO gladd_task_counts (kind, state, n)
SELECT kind, state, count(*) FROM gladd_tasks GROUP BY kind, state;

CREATE TRIGGER gladd_task_counts_insert AFTER INSERT ON gladd_tasks
BEGIN
    INSERT INTO gladd_task_counts (kind, state, n) VALUES (new.kind, new.state, 1)
    ON CONFLICT (kind, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER gladd_task_counts_delete AFTER DELETE ON gladd_tasks
BEGIN
    UPDATE gladd_task_counts SET n = n - 1 WHERE kind = old.kind AND state = old.state;
END;

-- One statement for both rows: a trigger's statements are most of what it costs, and this
-- one runs twice per task (claimed, finished).
CREATE TRIGGER gladd_task_counts_update AFTER UPDATE OF state, kind ON gladd_tasks
WHEN old.state IS NOT new.state OR old.kind IS NOT new.kind
BEGIN
    INSERT INTO gladd_task_counts (kind, state, n)
    VALUES (old.kind, old.state, -1), (new.kind, new.state, 1)
    ON CONFLICT (kind, state) DO UPDATE SET n = n + excluded.n;
END;
