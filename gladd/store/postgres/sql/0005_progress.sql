-- gladd PostgreSQL schema, version 5: progress a handler reports (ctx.progress, issue 15).
--
-- The last report is kept through retries (the next attempt's first report replaces it);
-- progress_attempt says which attempt made it. All NULL for a task that never reported.
-- Adding nullable columns without a default rewrites nothing: instant on a large table.
--
-- Waiters (Client.wait, gladd tasks wait) LISTEN on the channel gladd_task_events: the
-- statements that finish a task or store progress notify it with the task ids changed,
-- comma-separated (see queries.sql).

ALTER TABLE gladd_tasks
    ADD COLUMN progress double precision CHECK (progress BETWEEN 0 AND 1),
    ADD COLUMN progress_message text,
    ADD COLUMN progress_at timestamptz,
    ADD COLUMN progress_attempt integer;
