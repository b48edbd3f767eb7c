-- gladd SQLite schema, version 7: each task's timeline and the start of its first attempt
-- (issue 14). Applied by SQLiteStore.open() inside one BEGIN IMMEDIATE transaction.
--
-- timeline is a JSON array of entries (gladd/store/timeline.py), appended to by the very
-- statement that makes the change an entry records, through gladd_timeline(timeline,
-- entries): a function the store registers on its connection, which keeps the array
-- bounded (and gladd_claimed(timeline, at, node, token, attempt), a claim's two entries).
-- Tasks from before this version start with an empty timeline.
-- started_at is INTEGER microseconds since the epoch (UTC); NULL until a first claim.

ALTER TABLE gladd_tasks ADD COLUMN timeline TEXT NOT NULL DEFAULT '[]';
ALTER TABLE gladd_tasks ADD COLUMN started_at INTEGER;
