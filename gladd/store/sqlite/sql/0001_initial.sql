-- gladd SQLite schema, version 1: tasks and workers.
-- Applied by SQLiteStore.open() inside one BEGIN IMMEDIATE transaction.
--
-- Times are INTEGER microseconds since the Unix epoch, UTC. JSON (payload, result, errors)
-- is TEXT. The defaults let an application enqueue with a plain INSERT naming only `kind`
-- (and `payload`); such tasks are found by the executor's polling, not woken at once.

CREATE TABLE gladd_tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: ids are fencing keys
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL DEFAULT '{}',
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'succeeded', 'dead', 'cancelled')),
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL
                     DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    timeout          REAL CHECK (timeout > 0),
    unique_key       TEXT,
    owner            TEXT,
    token            INTEGER NOT NULL DEFAULT 0,
    rescues          INTEGER NOT NULL DEFAULT 0,
    deadline         INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result           TEXT,
    errors           TEXT NOT NULL DEFAULT '[]',
    created_at       INTEGER NOT NULL
                     DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    updated_at       INTEGER NOT NULL
                     DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)),
    finished_at      INTEGER
);

-- Claims read only this index, which holds pending rows alone: a million finished tasks
-- do not slow them down. Its order is the claim order, so a claim of N reads about N
-- entries even behind a large backlog of due tasks.
CREATE INDEX gladd_tasks_claim ON gladd_tasks (priority DESC, run_at, id)
    WHERE state = 'pending';

-- At most one unfinished task per unique_key.
CREATE UNIQUE INDEX gladd_tasks_unique_key ON gladd_tasks (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'running');

-- Rescue and heartbeats look at running tasks only.
CREATE INDEX gladd_tasks_running ON gladd_tasks (owner, deadline)
    WHERE state = 'running';

-- Purge.
CREATE INDEX gladd_tasks_finished ON gladd_tasks (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE gladd_workers (
    id        TEXT PRIMARY KEY,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
