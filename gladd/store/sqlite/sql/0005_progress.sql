-- gladd SQLite schema, version 5: progress a handler reports (ctx.progress, issue 15).
-- Applied by SQLiteStore.open() inside one BEGIN IMMEDIATE transaction.
--
-- The last report is kept through retries (the next attempt's first report replaces it);
-- progress_attempt says which attempt made it. All NULL for a task that never reported.
-- progress is a fraction in 0..1, progress_at INTEGER microseconds since the epoch (UTC).

ALTER TABLE gladd_tasks ADD COLUMN progress REAL CHECK (progress BETWEEN 0 AND 1);
ALTER TABLE gladd_tasks ADD COLUMN progress_message TEXT;
ALTER TABLE gladd_tasks ADD COLUMN progress_at INTEGER;
ALTER TABLE gladd_tasks ADD COLUMN progress_attempt INTEGER;
