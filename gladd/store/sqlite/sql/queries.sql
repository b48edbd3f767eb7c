-- Named queries of SQLiteStore. Each `-- name: NAME` starts one query; the text is constant,
-- so sqlite3's statement cache prepares each once. Values travel only as parameters; lists
-- travel as JSON arrays and are read with json_each(). Times are INTEGER microseconds since
-- the Unix epoch (UTC). A query returning tasks names the columns in the order
-- rows.row_to_task reads them.

-- name: has_migrations_table
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gladd_migrations';

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS gladd_migrations
(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);

-- name: migration_versions
SELECT version FROM gladd_migrations;

-- name: record_migration
INSERT INTO gladd_migrations (version, applied_at) VALUES (?, ?);

-- name: insert
-- Named fields; the rest take the schema's defaults. The last two are the timeline's
-- `created` entry's time (ISO 8601) and source (gladd/store/timeline.py).
INSERT INTO gladd_tasks (kind, payload, priority, run_at, max_attempts, timeout,
                         unique_key, traceparent, schedule, scheduled_for, result,
                         created_at, updated_at, timeline)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'null', ?, ?,
        json_array(json_object('at', ?, 'event', 'created', 'source', ?)));

-- name: unfinished_id_by_key
SELECT id FROM gladd_tasks WHERE unique_key = ? AND state IN ('pending', 'running');

-- name: seen
INSERT INTO gladd_workers (id, last_seen) VALUES (?, ?)
ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen);

-- name: claim
-- Walks the claim index in its order (priority desc, run_at, id): see 0001_initial.sql.
UPDATE gladd_tasks SET
    state = 'running', owner = :worker, attempt = attempt + 1, token = token + 1,
    deadline = :now + CAST(round(timeout * 1000000) AS INTEGER), updated_at = :now,
    started_at = coalesce(started_at, :now),
    timeline = CASE WHEN length(timeline) > 2115
        THEN gladd_claimed(timeline, :at, :worker, token + 1, attempt + 1)
        ELSE substr(timeline, 1, length(timeline) - 1) || CASE timeline WHEN '[]' THEN '' ELSE ',' END
            || '{"at":"' || :at || '","event":"claimed","node":' || json_quote(:worker)
            || ',"token":' || (token + 1) || '},{"at":"' || :at
            || '","event":"attempt started","attempt":' || (attempt + 1) || '}]' END
WHERE id IN (
    SELECT id FROM gladd_tasks
    WHERE state = 'pending' AND run_at <= :now
    ORDER BY priority DESC, run_at, id LIMIT :limit
)
RETURNING id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout,
          unique_key, owner, token, rescues, deadline, cancel_requested, result, errors,
          created_at, updated_at, finished_at, traceparent, schedule, scheduled_for,
          progress, progress_message, progress_at, progress_attempt, started_at;

-- name: claim_kinds
-- The claim, of the kinds in the JSON array :kinds only.
UPDATE gladd_tasks SET
    state = 'running', owner = :worker, attempt = attempt + 1, token = token + 1,
    deadline = :now + CAST(round(timeout * 1000000) AS INTEGER), updated_at = :now,
    started_at = coalesce(started_at, :now),
    timeline = CASE WHEN length(timeline) > 2115
        THEN gladd_claimed(timeline, :at, :worker, token + 1, attempt + 1)
        ELSE substr(timeline, 1, length(timeline) - 1) || CASE timeline WHEN '[]' THEN '' ELSE ',' END
            || '{"at":"' || :at || '","event":"claimed","node":' || json_quote(:worker)
            || ',"token":' || (token + 1) || '},{"at":"' || :at
            || '","event":"attempt started","attempt":' || (attempt + 1) || '}]' END
WHERE id IN (
    SELECT id FROM gladd_tasks
    WHERE state = 'pending' AND run_at <= :now AND kind IN (SELECT value FROM json_each(:kinds))
    ORDER BY priority DESC, run_at, id LIMIT :limit
)
RETURNING id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout,
          unique_key, owner, token, rescues, deadline, cancel_requested, result, errors,
          created_at, updated_at, finished_at, traceparent, schedule, scheduled_for,
          progress, progress_message, progress_at, progress_attempt, started_at;

-- Outcomes. Each applies only while the task is running under the token named; a task whose
-- cancellation was requested finishes cancelled instead of going back to pending.
-- :tail is the compact JSON array the outcome appends to the timeline
-- (timeline.outcome_entries) without its first two characters, `[{`: its first entry,
-- `attempt ended`, gets `{"attempt":N,` here. :if_cancelled_tail is the same with a
-- `cancelled` entry after them, for a task that ends cancelled. Until a timeline is long
-- (2115 characters: no entry is shorter than 45, so it holds at most 47 and cannot pass the
-- bound of 50) the texts are joined as text, never decoded; past it the bound runs
-- (gladd_timeline, in Python). A Python function on every row made the database thread
-- wait for the GIL, and JSON functions on every row cost the drain a quarter of its rate
-- (bench/bench_executor.py).

-- name: succeed
UPDATE gladd_tasks SET state = 'succeeded', result = :result, finished_at = :now,
    owner = NULL, deadline = NULL, updated_at = :now,
    timeline = CASE WHEN length(timeline) > 2115 THEN gladd_timeline(timeline, '[{"attempt":' || attempt || ',' || :tail)
        ELSE substr(timeline, 1, length(timeline) - 1)
            || CASE timeline WHEN '[]' THEN '' ELSE ',' END || '{"attempt":' || attempt || ','
            || :tail END
WHERE id = :id AND token = :token AND state = 'running';

-- name: fail_dead
UPDATE gladd_tasks SET state = 'dead', finished_at = :now,
    errors = json_insert(errors, '$[#]', json(:error)),
    owner = NULL, deadline = NULL, updated_at = :now,
    timeline = CASE WHEN length(timeline) > 2115 THEN gladd_timeline(timeline, '[{"attempt":' || attempt || ',' || :tail)
        ELSE substr(timeline, 1, length(timeline) - 1)
            || CASE timeline WHEN '[]' THEN '' ELSE ',' END || '{"attempt":' || attempt || ','
            || :tail END
WHERE id = :id AND token = :token AND state = 'running';

-- name: fail_retry
UPDATE gladd_tasks SET
    state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    run_at = CASE WHEN cancel_requested THEN run_at ELSE :run_at END,
    finished_at = CASE WHEN cancel_requested THEN :now END,
    errors = json_insert(errors, '$[#]', json(:error)),
    owner = NULL, deadline = NULL, updated_at = :now,
    timeline = CASE WHEN length(timeline) > 2115 THEN gladd_timeline(timeline, '[{"attempt":' || attempt || ',' || CASE WHEN cancel_requested THEN :if_cancelled_tail ELSE :tail END)
        ELSE substr(timeline, 1, length(timeline) - 1)
            || CASE timeline WHEN '[]' THEN '' ELSE ',' END || '{"attempt":' || attempt || ','
            || CASE WHEN cancel_requested THEN :if_cancelled_tail ELSE :tail END END
WHERE id = :id AND token = :token AND state = 'running';

-- name: release
-- Back to pending without spending the attempt.
UPDATE gladd_tasks SET
    state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    run_at = CASE WHEN cancel_requested THEN run_at ELSE :run_at END,
    finished_at = CASE WHEN cancel_requested THEN :now END,
    attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt - 1 END,
    owner = NULL, deadline = NULL, updated_at = :now,
    timeline = CASE WHEN length(timeline) > 2115 THEN gladd_timeline(timeline, '[{"attempt":' || attempt || ',' || CASE WHEN cancel_requested THEN :if_cancelled_tail ELSE :tail END)
        ELSE substr(timeline, 1, length(timeline) - 1)
            || CASE timeline WHEN '[]' THEN '' ELSE ',' END || '{"attempt":' || attempt || ','
            || CASE WHEN cancel_requested THEN :if_cancelled_tail ELSE :tail END END
WHERE id = :id AND token = :token AND state = 'running';

-- name: cancelled
UPDATE gladd_tasks SET state = 'cancelled', finished_at = :now,
    owner = NULL, deadline = NULL, updated_at = :now,
    timeline = CASE WHEN length(timeline) > 2115 THEN gladd_timeline(timeline, '[{"attempt":' || attempt || ',' || :if_cancelled_tail)
        ELSE substr(timeline, 1, length(timeline) - 1)
            || CASE timeline WHEN '[]' THEN '' ELSE ',' END || '{"attempt":' || attempt || ','
            || :if_cancelled_tail END
WHERE id = :id AND token = :token AND state = 'running';

-- name: fenced
-- An outcome whose token no longer holds changes nothing but the timeline: :entries holds
-- its `fenced` entry.
UPDATE gladd_tasks SET timeline = gladd_timeline(timeline, :entries)
WHERE id = :id AND token <> :token;

-- name: cancel_requests
-- Of the JSON array of ids a worker runs, those whose cancellation was requested.
SELECT id, token FROM gladd_tasks WHERE id IN (SELECT value FROM json_each(?))
AND state = 'running' AND owner = ? AND cancel_requested;

-- name: workers
SELECT id, last_seen FROM gladd_workers;

-- name: running
SELECT id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key,
       owner, token, rescues, deadline, cancel_requested, result, errors, created_at,
       updated_at, finished_at, traceparent, schedule, scheduled_for,
       progress, progress_message, progress_at, progress_attempt, started_at
FROM gladd_tasks WHERE state = 'running';

-- name: rescue
UPDATE gladd_tasks SET state = :state, run_at = :run_at, owner = NULL, deadline = NULL,
    token = token + 1, rescues = rescues + 1,
    errors = json_insert(errors, '$[#]', json(:error)), updated_at = :now,
    finished_at = :finished_at, timeline = gladd_timeline(timeline, :entries)
WHERE id = :id;

-- name: forget_workers_seen_before
DELETE FROM gladd_workers WHERE last_seen <= ?;

-- name: forget_worker
DELETE FROM gladd_workers WHERE id = ?;

-- name: get
SELECT id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key,
       owner, token, rescues, deadline, cancel_requested, result, errors, created_at,
       updated_at, finished_at, traceparent, schedule, scheduled_for,
       progress, progress_message, progress_at, progress_attempt, started_at
FROM gladd_tasks WHERE id = ?;

-- name: timeline
SELECT timeline FROM gladd_tasks WHERE id = ?;

-- name: list
-- Newest first; each filter is skipped when its parameter is NULL.
SELECT id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key,
       owner, token, rescues, deadline, cancel_requested, result, errors, created_at,
       updated_at, finished_at, traceparent, schedule, scheduled_for,
       progress, progress_message, progress_at, progress_attempt, started_at
FROM gladd_tasks
WHERE (:state IS NULL OR state = :state)
  AND (:kind IS NULL OR kind = :kind)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC LIMIT :limit;

-- name: cancel
-- Pending: cancelled at once. Running: flagged for its owner's next heartbeat. Returns
-- nothing for a task it leaves as it was.
UPDATE gladd_tasks SET
    state = CASE state WHEN 'pending' THEN 'cancelled' ELSE state END,
    finished_at = CASE state WHEN 'pending' THEN :now ELSE finished_at END,
    cancel_requested = cancel_requested OR state = 'running', updated_at = :now,
    timeline = gladd_timeline(timeline, json_array(json_object(
        'at', :at, 'event', CASE state WHEN 'pending' THEN 'cancelled' ELSE 'cancel requested' END,
        'by', :by)))
WHERE id = :id AND (state = 'pending' OR (state = 'running' AND NOT cancel_requested))
RETURNING id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout,
          unique_key, owner, token, rescues, deadline, cancel_requested, result, errors,
          created_at, updated_at, finished_at, traceparent, schedule, scheduled_for,
          progress, progress_message, progress_at, progress_attempt, started_at;

-- name: retry
UPDATE gladd_tasks SET state = 'pending', run_at = :now, attempt = 0, rescues = 0,
    owner = NULL, deadline = NULL, cancel_requested = 0, result = 'null', finished_at = NULL,
    updated_at = :now, timeline = gladd_timeline(timeline, :entries)
WHERE id = :id
RETURNING id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout,
          unique_key, owner, token, rescues, deadline, cancel_requested, result, errors,
          created_at, updated_at, finished_at, traceparent, schedule, scheduled_for,
          progress, progress_message, progress_at, progress_attempt, started_at;

-- name: purge
-- :states is a JSON array of finished states.
DELETE FROM gladd_tasks
WHERE finished_at < :finished_before AND state IN (SELECT value FROM json_each(:states));

-- name: count_purgeable
SELECT count(*) FROM gladd_tasks
WHERE finished_at < :finished_before AND state IN (SELECT value FROM json_each(:states));

-- Schedules. A schedule advances by a compare-and-set on its last tick: the insert for a
-- schedule never advanced, the update from the tick the caller read; each changes one row
-- or none, and none means another node advanced it first.

-- name: schedule_states
SELECT s.name, s.spec, s.last_tick, s.last_task, s.last_fired_at, t.state
FROM gladd_schedules AS s LEFT JOIN gladd_tasks AS t ON t.id = s.last_task;

-- name: schedule_insert
INSERT INTO gladd_schedules (name, spec, last_tick, updated_at)
VALUES (:name, :spec, :to, :now)
ON CONFLICT (name) DO NOTHING;

-- name: schedule_advance
UPDATE gladd_schedules SET last_tick = :to, spec = :spec, updated_at = :now
WHERE name = :name AND last_tick = :expected;

-- name: schedule_fired
UPDATE gladd_schedules SET last_task = :task, last_fired_at = :now WHERE name = :name;

-- name: forget_schedules
-- :keep is a JSON array of the names to keep.
DELETE FROM gladd_schedules WHERE name NOT IN (SELECT value FROM json_each(:keep));

-- Flow control (0004_flow.sql). A gated claim runs these in one BEGIN IMMEDIATE transaction,
-- so no other writer on the file comes between its count and its start. :paths is a JSON
-- object of partition field → JSON path; each task's values come back as a JSON object of
-- field → text (a missing or null field: null; a payload that is not JSON: no object).

-- name: gated_running
-- Running tasks of the JSON array :kinds, counted per kind and partition values; through
-- gladd_tasks_running. Those of :worker in the JSON array :ended (attempts over, outcomes
-- not stored yet) are left out.
SELECT kind, parts, count(*) FROM (
    SELECT t.kind, CASE WHEN json_valid(t.payload) THEN (
        SELECT json_group_object(p.key, CASE json_type(t.payload, p.value)
            WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
            ELSE CAST(json_extract(t.payload, p.value) AS TEXT) END)
        FROM json_each(:paths) AS p) END AS parts
    FROM gladd_tasks AS t
    WHERE t.state = 'running' AND t.kind IN (SELECT value FROM json_each(:kinds))
      AND NOT (t.owner = :worker AND t.id IN (SELECT value FROM json_each(:ended)))
)
GROUP BY kind, parts;

-- name: gated_candidates
-- Due pending tasks of the kinds in :kinds, the first :scan in claim order (the claim index).
SELECT t.id, t.kind, CASE WHEN json_valid(t.payload) THEN (
    SELECT json_group_object(p.key, CASE json_type(t.payload, p.value)
        WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'
        ELSE CAST(json_extract(t.payload, p.value) AS TEXT) END)
    FROM json_each(:paths) AS p) END AS parts
FROM gladd_tasks AS t
WHERE t.state = 'pending' AND t.run_at <= :now
  AND t.kind IN (SELECT value FROM json_each(:kinds))
ORDER BY t.priority DESC, t.run_at, t.id
LIMIT :scan;

-- name: gated_start
-- The claim's update, of the ids in the JSON array :ids.
UPDATE gladd_tasks SET
    state = 'running', owner = :worker, attempt = attempt + 1, token = token + 1,
    deadline = :now + CAST(round(timeout * 1000000) AS INTEGER), updated_at = :now,
    started_at = coalesce(started_at, :now),
    timeline = CASE WHEN length(timeline) > 2115
        THEN gladd_claimed(timeline, :at, :worker, token + 1, attempt + 1)
        ELSE substr(timeline, 1, length(timeline) - 1) || CASE timeline WHEN '[]' THEN '' ELSE ',' END
            || '{"at":"' || :at || '","event":"claimed","node":' || json_quote(:worker)
            || ',"token":' || (token + 1) || '},{"at":"' || :at
            || '","event":"attempt started","attempt":' || (attempt + 1) || '}]' END
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'pending'
RETURNING id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout,
          unique_key, owner, token, rescues, deadline, cancel_requested, result, errors,
          created_at, updated_at, finished_at, traceparent, schedule, scheduled_for,
          progress, progress_message, progress_at, progress_attempt, started_at;

-- name: limit_buckets
-- The stored buckets of the gates named in the JSON array :gates.
SELECT gate, part, tokens, at FROM gladd_limit_tokens
WHERE gate IN (SELECT value FROM json_each(:gates));

-- name: limit_bucket_store
INSERT INTO gladd_limit_tokens (gate, part, tokens, at) VALUES (?, ?, ?, ?)
ON CONFLICT (gate, part) DO UPDATE SET tokens = excluded.tokens, at = excluded.at;

-- name: sweep_buckets
DELETE FROM gladd_limit_tokens WHERE at < ?;

-- name: pauses
SELECT target, reason, until, by, created_at FROM gladd_pauses
WHERE until IS NULL OR until > ?
ORDER BY target;

-- name: pause
INSERT INTO gladd_pauses (target, reason, until, by, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (target) DO UPDATE SET
    reason = excluded.reason, until = excluded.until, by = excluded.by,
    created_at = excluded.created_at;

-- name: resume
DELETE FROM gladd_pauses WHERE target = ?
RETURNING target, reason, until, by, created_at;

-- name: sweep_pauses
DELETE FROM gladd_pauses WHERE until <= ?;

-- The kinds catalogue (0006_kinds.sql).

-- name: kinds_forget_node
DELETE FROM gladd_kinds WHERE node = ?;

-- name: kinds_publish
INSERT INTO gladd_kinds (name, node, plugin, description, payload_schema, services, published_at)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: kinds_catalogue
SELECT name, node, plugin, description, payload_schema, services, published_at FROM gladd_kinds
ORDER BY name, node;

-- Progress (0005_progress.sql). A handler's report applies only while the task is running
-- under the token named, as outcomes do: a rescued task's old attempt reports into nothing.

-- name: progress
UPDATE gladd_tasks SET progress = :fraction, progress_message = :message,
    progress_at = :now, progress_attempt = :attempt
WHERE id = :id AND token = :token AND state = 'running';

-- Breaker overrides (0008_breakers.sql).

-- name: breaker_overrides
SELECT name, state, by, created_at FROM gladd_breakers ORDER BY name;

-- name: isolate_breaker
INSERT INTO gladd_breakers (name, state, by, created_at) VALUES (?, 'isolated', ?, ?)
ON CONFLICT (name) DO UPDATE SET by = excluded.by, created_at = excluded.created_at;

-- name: reset_breaker
DELETE FROM gladd_breakers WHERE name = ? RETURNING name, state, by, created_at;

-- Listing, counts and workers (issue 14; the rules in gladd/store/listing.py).

-- name: task_stats
SELECT kind, state, n FROM gladd_task_counts WHERE n <> 0;

-- name: task_filter
-- The conditions of `find` and `count_matching` (gladd/store/sqlite/listing.py puts them in
-- both): below :below; each filter is skipped when its parameter is NULL (:states is a
-- JSON array, NULL for any state).
id < :below
  AND (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:kind IS NULL OR kind = :kind)
  AND (:error IS NULL OR EXISTS (
        SELECT 1 FROM json_each(errors) AS e
        WHERE instr(lower(json_extract(e.value, '$.type') || ': '
                          || json_extract(e.value, '$.message')), lower(:error)) > 0))
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until);

-- name: find
-- Newest first; WHERE: task_filter.
SELECT id, kind, payload, state, priority, run_at, attempt, max_attempts, timeout, unique_key,
       owner, token, rescues, deadline, cancel_requested, result, errors, created_at,
       updated_at, finished_at, traceparent, schedule, scheduled_for,
       progress, progress_message, progress_at, progress_attempt, started_at
FROM gladd_tasks WHERE {task_filter} ORDER BY id DESC LIMIT :limit;

-- name: count_matching
SELECT count(*) FROM gladd_tasks WHERE {task_filter};

-- name: worker_rows
SELECT w.id, w.last_seen,
       (SELECT count(*) FROM gladd_tasks AS t WHERE t.owner = w.id AND t.state = 'running')
FROM gladd_workers AS w
ORDER BY w.id;
