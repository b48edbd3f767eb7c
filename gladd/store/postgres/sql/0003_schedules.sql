-- gladd PostgreSQL schema, version 3: periodic schedules.
-- A task a schedule enqueued names it and the tick it was for; NULL for every other task
-- (and for those stored before version 3). Nullable columns without a default: adding them
-- rewrites nothing and holds the lock for an instant.
--
-- gladd_schedules: where each schedule stands, shared by every node. A node fires a tick
-- only by moving `last_tick` from the value it read (a compare-and-set, in the transaction
-- that stores the tick's tasks), so each tick fires once across nodes without a leader.
-- `last_task` is not a foreign key: a purge may delete that task, and the schedule goes on.

ALTER TABLE gladd_tasks ADD COLUMN schedule text, ADD COLUMN scheduled_for timestamptz;

CREATE TABLE gladd_schedules (
    name          text PRIMARY KEY,
    spec          text NOT NULL,         -- fingerprint of the timing last advanced under
    last_tick     timestamptz NOT NULL,  -- the latest tick handled, fired or skipped
    last_task     bigint,                -- the id of the last task it enqueued
    last_fired_at timestamptz,           -- when that task was enqueued
    updated_at    timestamptz NOT NULL
);
