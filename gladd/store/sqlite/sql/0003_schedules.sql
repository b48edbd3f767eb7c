-- gladd SQLite schema, version 3: periodic schedules.
-- A task a schedule enqueued names it and the tick it was for; NULL for every other task
-- (and for those stored before version 3).
--
-- gladd_schedules: where each schedule stands, shared by every process on the file. A node
-- fires a tick only by moving `last_tick` from the value it read (a compare-and-set, in the
-- transaction that stores the tick's tasks), so each tick fires once. `last_task` is not a
-- foreign key: a purge may delete that task, and the schedule goes on.

ALTER TABLE gladd_tasks ADD COLUMN schedule TEXT;
ALTER TABLE gladd_tasks ADD COLUMN scheduled_for INTEGER;

CREATE TABLE gladd_schedules (
    name          TEXT PRIMARY KEY,
    spec          TEXT NOT NULL,      -- fingerprint of the timing it was last advanced under
    last_tick     INTEGER NOT NULL,   -- the latest tick handled, fired or skipped
    last_task     INTEGER,            -- the id of the last task it enqueued
    last_fired_at INTEGER,            -- when that task was enqueued
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
