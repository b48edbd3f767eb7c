-- Named queries of PostgresStore. Each `-- name: NAME` starts one query; the text is constant,
-- so asyncpg's per-connection prepared-statement cache hits on every call after the first.
-- Values travel only as parameters ($1...); batches travel as arrays and are unnest()ed.

-- name: enqueue
-- $1 now; $2.. one array per NewTask field. Ids are drawn up front so each input row knows
-- its task; a unique_key conflict inserts nothing and returns the id of the unfinished task
-- holding it (one inserted earlier in this very batch included). Ids only: reading whole
-- rows back was most of a batch's time (bench/bench_producer.py).
WITH input AS MATERIALIZED (
    SELECT nextval('gladd_tasks_id_seq') AS id, i.*
    FROM unnest($2::text[], $3::text[], $4::integer[], $5::timestamptz[], $6::integer[],
                $7::double precision[], $8::text[], $9::text[], $10::timestamptz[], $11::text[],
                $12::text[])
         WITH ORDINALITY AS i(kind, payload, priority, run_at, max_attempts, timeout,
                              traceparent, schedule, scheduled_for, source, unique_key, ord)
), inserted AS (
    INSERT INTO gladd_tasks AS t (id, kind, payload, priority, run_at, max_attempts, timeout,
                                  traceparent, schedule, scheduled_for, unique_key,
                                  created_at, updated_at, timeline)
    SELECT id, kind, payload::jsonb, priority, run_at, max_attempts, timeout, traceparent,
           schedule, scheduled_for, unique_key, $1, $1,
           jsonb_build_array(jsonb_build_object('at', (SELECT gladd_iso($1)), 'event', 'created',
                                                'source', source))
    FROM input
    ORDER BY ord
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running')
    DO NOTHING
    RETURNING t.id, t.unique_key
)
SELECT ord, true AS created, id
FROM input WHERE unique_key IS NULL  -- nothing to conflict with: inserted, no join needed
UNION ALL
SELECT i.ord, true, n.id
FROM input AS i JOIN inserted AS n ON n.id = i.id
WHERE i.unique_key IS NOT NULL
UNION ALL
SELECT i.ord, false, n.id
FROM input AS i JOIN inserted AS n ON n.unique_key = i.unique_key AND n.id <> i.id
UNION ALL
SELECT i.ord, false, e.id
FROM input AS i
JOIN gladd_tasks AS e ON e.unique_key = i.unique_key AND e.state IN ('pending', 'running')
WHERE i.unique_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM inserted AS n WHERE n.id = i.id);

-- name: enqueue_plain
-- enqueue's batch when no task has a unique_key (nothing can conflict): $1 now, $2..$11 its
-- arrays but unique_key's. No conflict arbiter and no joins back; the ids come back as one
-- array in input order (1.3x enqueue's rate for 1,000 tasks, bench/bench_producer.py).
WITH input AS MATERIALIZED (
    SELECT nextval('gladd_tasks_id_seq') AS id, i.*
    FROM unnest($2::text[], $3::text[], $4::integer[], $5::timestamptz[], $6::integer[],
                $7::double precision[], $8::text[], $9::text[], $10::timestamptz[], $11::text[])
         WITH ORDINALITY AS i(kind, payload, priority, run_at, max_attempts, timeout,
                              traceparent, schedule, scheduled_for, source, ord)
), inserted AS (
    INSERT INTO gladd_tasks (id, kind, payload, priority, run_at, max_attempts, timeout,
                             traceparent, schedule, scheduled_for, created_at, updated_at,
                             timeline)
    SELECT id, kind, payload::jsonb, priority, run_at, max_attempts, timeout, traceparent,
           schedule, scheduled_for, $1, $1,
           jsonb_build_array(jsonb_build_object('at', (SELECT gladd_iso($1)), 'event', 'created',
                                                'source', source))
    FROM input
    ORDER BY ord
)
SELECT array_agg(id ORDER BY ord) FROM input;

-- name: enqueue_one
-- One task: $1 now, then its fields in enqueue's order. The statement of every lone enqueue,
-- a plain insert that costs the server less than enqueue's arrays do; a unique_key conflict
-- inserts nothing and returns no row (unfinished_id_by_key then finds the holder).
INSERT INTO gladd_tasks (kind, payload, priority, run_at, max_attempts, timeout, traceparent,
                         schedule, scheduled_for, timeline, unique_key, created_at, updated_at)
VALUES ($2, $3::text::jsonb, $4, $5, $6, $7, $8, $9, $10,
        jsonb_build_array(jsonb_build_object('at', (SELECT gladd_iso($1)), 'event', 'created',
                                             'source', $11::text)),
        $12, $1, $1)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('pending', 'running')
DO NOTHING
RETURNING id;

-- name: unfinished_by_keys
SELECT id, unique_key FROM gladd_tasks
WHERE unique_key = ANY($1::text[]) AND state IN ('pending', 'running');

-- name: unfinished_id_by_key
SELECT id FROM gladd_tasks WHERE unique_key = $1 AND state IN ('pending', 'running');

-- name: claim
-- The inner SELECT walks the partial index gladd_tasks_claim; SKIP LOCKED lets nodes claim
-- side by side without waiting for, or double-claiming, each other's rows.
WITH seen AS (  -- a claim is a sign of life, as a heartbeat is
    INSERT INTO gladd_workers AS w (id, last_seen) VALUES ($1, $2)
    ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen
    WHERE w.last_seen < excluded.last_seen
)
UPDATE gladd_tasks AS t
SET state = 'running', owner = $1, attempt = t.attempt + 1, token = t.token + 1,
    deadline = $2::timestamptz + make_interval(secs => t.timeout),
    claim_id = $4, updated_at = $2, started_at = coalesce(t.started_at, $2),
    timeline = gladd_claimed(t.timeline, $1, $5::text, t.token + 1, t.attempt + 1)
WHERE t.id IN (
    SELECT id FROM gladd_tasks
    WHERE state = 'pending' AND run_at <= $2
    ORDER BY priority DESC, run_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING t.*;

-- name: claim_kinds
WITH seen AS (  -- a claim is a sign of life, as a heartbeat is
    INSERT INTO gladd_workers AS w (id, last_seen) VALUES ($1, $2)
    ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen
    WHERE w.last_seen < excluded.last_seen
)
UPDATE gladd_tasks AS t
SET state = 'running', owner = $1, attempt = t.attempt + 1, token = t.token + 1,
    deadline = $2::timestamptz + make_interval(secs => t.timeout),
    claim_id = $4, updated_at = $2, started_at = coalesce(t.started_at, $2),
    timeline = gladd_claimed(t.timeline, $1, $6::text, t.token + 1, t.attempt + 1)
WHERE t.id IN (
    SELECT id FROM gladd_tasks
    WHERE state = 'pending' AND run_at <= $2 AND kind = ANY($5::text[])
    ORDER BY priority DESC, run_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING t.*;

-- name: claimed_by
-- After a claim whose commit went unanswered: the tasks that claim took, if it committed.
SELECT * FROM gladd_tasks WHERE state = 'running' AND owner = $1 AND claim_id = $2;

-- name: finish
-- $1 now; then (ids, tokens, ...) per outcome type. Each UPDATE applies only while the
-- task is still running under the token named; the ids returned are the writes that held
-- (and NULL rows, the waiters' notes).
-- A task whose cancellation was requested never goes back to pending: it ends cancelled.
-- A task back to pending and due at once wakes the listeners.
-- o.entries: what the outcome appends to the timeline (timeline.outcome_entries); its first
-- entry, `attempt ended`, gets the attempt number here, and a task ending cancelled because
-- its cancellation was requested gets $18 (a `cancelled` entry) after them.
WITH succeeded AS (
    UPDATE gladd_tasks AS t
    SET state = 'succeeded', result = o.result::jsonb, owner = NULL, deadline = NULL,
        finished_at = $1, updated_at = $1,
        timeline = gladd_timeline(t.timeline,
            jsonb_set(o.entries::jsonb, '{0,attempt}', to_jsonb(t.attempt)))
    FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[])
         AS o(id, token, result, entries)
    WHERE t.id = o.id AND t.token = o.token AND t.state = 'running'
    RETURNING t.id, t.state, t.run_at
), failed AS (
    UPDATE gladd_tasks AS t
    SET state = CASE WHEN t.cancel_requested THEN 'cancelled'
                     WHEN o.retry_at IS NULL THEN 'dead' ELSE 'pending' END,
        run_at = CASE WHEN t.cancel_requested OR o.retry_at IS NULL THEN t.run_at
                      ELSE o.retry_at END,
        errors = t.errors || jsonb_build_array(o.error::jsonb),
        owner = NULL, deadline = NULL,
        finished_at = CASE WHEN t.cancel_requested OR o.retry_at IS NULL
                           THEN $1::timestamptz END,
        updated_at = $1,
        timeline = gladd_timeline(t.timeline,
            jsonb_set(o.entries::jsonb, '{0,attempt}', to_jsonb(t.attempt))
            || CASE WHEN t.cancel_requested AND o.retry_at IS NOT NULL
                    THEN $18::text::jsonb
                    ELSE '[]'::jsonb END)
    FROM unnest($6::bigint[], $7::bigint[], $8::text[], $9::timestamptz[], $10::text[])
         AS o(id, token, error, retry_at, entries)
    WHERE t.id = o.id AND t.token = o.token AND t.state = 'running'
    RETURNING t.id, t.state, t.run_at
), released AS (
    UPDATE gladd_tasks AS t
    SET state = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'pending' END,
        run_at = CASE WHEN t.cancel_requested THEN t.run_at ELSE o.run_at END,
        attempt = CASE WHEN t.cancel_requested THEN t.attempt ELSE t.attempt - 1 END,
        finished_at = CASE WHEN t.cancel_requested THEN $1::timestamptz END,
        owner = NULL, deadline = NULL, updated_at = $1,
        timeline = gladd_timeline(t.timeline,
            jsonb_set(o.entries::jsonb, '{0,attempt}', to_jsonb(t.attempt))
            || CASE WHEN t.cancel_requested
                    THEN $18::text::jsonb
                    ELSE '[]'::jsonb END)
    FROM unnest($11::bigint[], $12::bigint[], $13::timestamptz[], $14::text[])
         AS o(id, token, run_at, entries)
    WHERE t.id = o.id AND t.token = o.token AND t.state = 'running'
    RETURNING t.id, t.state, t.run_at
), cancelled AS (
    UPDATE gladd_tasks AS t
    SET state = 'cancelled', owner = NULL, deadline = NULL, finished_at = $1, updated_at = $1,
        timeline = gladd_timeline(t.timeline,
            jsonb_set(o.entries::jsonb, '{0,attempt}', to_jsonb(t.attempt))
            || $18::text::jsonb)
    FROM unnest($15::bigint[], $16::bigint[], $17::text[]) AS o(id, token, entries)
    WHERE t.id = o.id AND t.token = o.token AND t.state = 'running'
    RETURNING t.id, t.state, t.run_at
), done AS (
    SELECT * FROM succeeded UNION ALL SELECT * FROM failed
    UNION ALL SELECT * FROM released UNION ALL SELECT * FROM cancelled
)
SELECT id, CASE WHEN state = 'pending' AND run_at <= $1 THEN pg_notify('gladd_tasks', '') END
FROM done
UNION ALL  -- and every outcome stored tells the waiters (0005_progress.sql), 500 ids a note
SELECT NULL, pg_notify('gladd_task_events', string_agg(id::text, ','))
FROM (SELECT id, (row_number() OVER () - 1) / 500 AS note FROM done) AS d
GROUP BY note;

-- name: fenced
-- After a finish, for the outcomes whose tokens did not hold: each task whose token moved on
-- gets its `fenced` entry (o.entries), and nothing else changes.
UPDATE gladd_tasks AS t SET timeline = gladd_timeline(t.timeline, o.entries::jsonb)
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS o(id, token, entries)
WHERE t.id = o.id AND t.token <> o.token;

-- name: heartbeat
WITH seen AS (
    INSERT INTO gladd_workers AS w (id, last_seen) VALUES ($1, $2)
    ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen
    WHERE w.last_seen < excluded.last_seen
)
SELECT t.id
FROM gladd_tasks AS t
JOIN unnest($3::bigint[], $4::bigint[]) AS r(id, token) ON t.id = r.id AND t.token = r.token
WHERE t.state = 'running' AND t.owner = $1 AND t.cancel_requested;

-- name: rescue_dead_workers
-- Rescue runs these three in one transaction. $1 now, $2 lease (s): a worker not heard from
-- for `lease` seconds or more is dead.
DELETE FROM gladd_workers
WHERE last_seen <= $1::timestamptz - make_interval(secs => $2::double precision)
RETURNING id;

-- name: rescue_victims
-- Running tasks of dead or unknown owners, and those past their deadline; locked in id
-- order, so concurrent rescuers cannot deadlock, and re-checked once the lock is held.
SELECT t.*, coalesce(t.owner IN (SELECT id FROM gladd_workers), false) AS live
FROM gladd_tasks AS t
WHERE t.owner IS NOT NULL AND t.state = 'running'
  AND (t.deadline < $1 OR t.owner NOT IN (SELECT id FROM gladd_workers))
ORDER BY t.id
FOR UPDATE OF t;

-- name: rescue_apply
WITH rescued AS (
    UPDATE gladd_tasks AS t
    SET state = r.state,
        run_at = CASE WHEN r.state = 'pending' THEN $1 ELSE t.run_at END,
        owner = NULL, deadline = NULL, token = t.token + 1, rescues = t.rescues + 1,
        errors = t.errors || jsonb_build_array(r.error::jsonb),
        finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE $1::timestamptz END,
        updated_at = $1, timeline = gladd_timeline(t.timeline, r.entries::jsonb)
    FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS r(id, state, error, entries)
    WHERE t.id = r.id AND t.state = 'running'
    RETURNING t.id, t.state
)
SELECT id, CASE WHEN state = 'pending' THEN pg_notify('gladd_tasks', '') END FROM rescued
UNION ALL  -- the waiters' notes, as finish sends them
SELECT NULL, pg_notify('gladd_task_events', string_agg(id::text, ','))
FROM (SELECT id, (row_number() OVER () - 1) / 500 AS note FROM rescued) AS d
GROUP BY note;

-- name: forget_worker
DELETE FROM gladd_workers WHERE id = $1;

-- name: get
SELECT * FROM gladd_tasks WHERE id = $1;

-- name: list
SELECT * FROM gladd_tasks
WHERE ($1::text IS NULL OR state = $1)
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC
LIMIT $4;

-- name: list_running
-- list with $1 'running': running tasks are exactly those with an owner, so the condition
-- `owner IS NOT NULL` lets every plan read the small partial index gladd_tasks_running.
SELECT * FROM gladd_tasks
WHERE owner IS NOT NULL AND state = $1
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC
LIMIT $4;

-- name: retry
WITH changed AS (
    UPDATE gladd_tasks AS t
    SET state = 'pending', run_at = $2, attempt = 0, rescues = 0, owner = NULL,
        deadline = NULL, cancel_requested = false, result = NULL, finished_at = NULL,
        updated_at = $2, timeline = gladd_timeline(t.timeline, $3::text::jsonb)
    WHERE t.id = $1 AND t.state IN ('dead', 'cancelled')
    RETURNING t.*
)
SELECT c.*, pg_notify('gladd_tasks', '') AS woke FROM changed AS c
UNION ALL
SELECT g.*, NULL FROM gladd_tasks AS g WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM changed);

-- name: retry_many
-- The retry of each of the ids $1 (one chunk) that is dead or cancelled, as `retry`, in one
-- statement: $2 now, $3 the `retried` entry. One whose unique key another unfinished task
-- holds is left; of those sharing a key, the first in $1 wins it. (A task taking the key
-- meanwhile, not yet committed, makes the unique index refuse the statement: run again, it
-- sees that task.) The executor is woken once, the waiters told of the ids changed.
WITH asked AS (
    SELECT t.id, t.unique_key,
           row_number() OVER (PARTITION BY t.unique_key ORDER BY a.pos) AS nth
    FROM unnest($1::bigint[]) WITH ORDINALITY AS a(id, pos)
    JOIN gladd_tasks AS t ON t.id = a.id
    WHERE t.state IN ('dead', 'cancelled')
), chosen AS (
    SELECT id FROM asked AS c
    WHERE c.unique_key IS NULL OR (c.nth = 1 AND NOT EXISTS (
        SELECT 1 FROM gladd_tasks AS u
        WHERE u.unique_key = c.unique_key AND u.state IN ('pending', 'running')))
), changed AS (
    UPDATE gladd_tasks AS t
    SET state = 'pending', run_at = $2, attempt = 0, rescues = 0, owner = NULL,
        deadline = NULL, cancel_requested = false, result = NULL, finished_at = NULL,
        updated_at = $2, timeline = gladd_timeline(t.timeline, $3::text::jsonb)
    FROM chosen AS c
    WHERE t.id = c.id AND t.state IN ('dead', 'cancelled')
    RETURNING t.id
)
SELECT id, NULL AS woke FROM changed
UNION ALL
SELECT NULL, pg_notify('gladd_tasks', '') FROM changed HAVING count(*) > 0
UNION ALL
SELECT NULL, pg_notify('gladd_task_events', string_agg(id::text, ','))
FROM changed HAVING count(*) > 0;

-- name: cancel_many
-- The cancel of each of the ids $1 (one chunk; `cancel`'s, one id) in one statement, $2
-- now, $3 who asked: pending ones cancelled at once, running ones flagged for their owner's
-- next heartbeat. Returns the ids it changed; the waiters are told of them.
WITH changed AS (
    UPDATE gladd_tasks AS t
    SET state = CASE WHEN t.state = 'pending' THEN 'cancelled' ELSE t.state END,
        cancel_requested = t.cancel_requested OR t.state = 'running',
        finished_at = CASE WHEN t.state = 'pending' THEN $2::timestamptz ELSE t.finished_at END,
        updated_at = $2,
        timeline = gladd_timeline(t.timeline, jsonb_build_array(jsonb_strip_nulls(
            jsonb_build_object('at', (SELECT gladd_iso($2)),
                'event', CASE WHEN t.state = 'pending' THEN 'cancelled' ELSE 'cancel requested' END,
                'by', $3::text))))
    WHERE t.id = ANY($1::bigint[])
      AND (t.state = 'pending' OR (t.state = 'running' AND NOT t.cancel_requested))
    RETURNING t.id
)
SELECT id, NULL AS woke FROM changed
UNION ALL
SELECT NULL, pg_notify('gladd_task_events', string_agg(id::text, ','))
FROM changed HAVING count(*) > 0;

-- name: purge
-- One bounded batch per statement, so a purge of millions stays under the query timeout.
WITH doomed AS (
    SELECT id FROM gladd_tasks WHERE finished_at < $1 AND state = ANY($3::text[]) LIMIT $2
)
DELETE FROM gladd_tasks AS t USING doomed AS d WHERE t.id = d.id;

-- name: count_purgeable
SELECT count(*) FROM gladd_tasks WHERE finished_at < $1 AND state = ANY($2::text[]);

-- Schedules. A schedule advances by a compare-and-set on its last tick, inside the
-- transaction that enqueues the tick's tasks: the insert for a schedule never advanced, the
-- update from the tick the caller read. Each returns its row or nothing, and nothing means
-- another node advanced it first (a racer waits for the winner's row lock, then finds the
-- tick moved, or the row there).

-- name: schedule_states
SELECT s.name, s.spec, s.last_tick, s.last_task, s.last_fired_at, t.state AS last_state
FROM gladd_schedules AS s LEFT JOIN gladd_tasks AS t ON t.id = s.last_task;

-- name: schedule_insert
-- $1 name, $2 spec, $3 the new last tick, $4 now.
INSERT INTO gladd_schedules (name, spec, last_tick, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: schedule_advance
-- $1 name, $2 spec, $3 the new last tick, $4 now, $5 the last tick the caller read.
UPDATE gladd_schedules SET last_tick = $3, spec = $2, updated_at = $4
WHERE name = $1 AND last_tick = $5
RETURNING name;

-- name: schedule_fired
UPDATE gladd_schedules SET last_task = $2, last_fired_at = $3 WHERE name = $1;

-- name: forget_schedules
DELETE FROM gladd_schedules WHERE NOT (name = ANY($1::text[]));

-- Flow control (0004_flow.sql; why a gated claim is correct across nodes: postgres/flow.py).
-- A gated claim runs gate_rows, gate_locks, then the reads and writes below, in one
-- transaction. $N::text[] of partition fields: each task's values come back as a text[] in
-- the same order, '' for a field missing or null.

-- name: gate_rows
-- The gates' lock rows, created on first use; in name order, as they are locked.
INSERT INTO gladd_limits (name)
SELECT name FROM unnest($1::text[]) AS g(name) ORDER BY name
ON CONFLICT (name) DO NOTHING;

-- name: gate_locks
SELECT name FROM gladd_limits WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE;

-- name: gated_running
-- Running tasks of the kinds $1, counted per kind and partition values $2; through the
-- partial index gladd_tasks_running (its predicate is `owner IS NOT NULL`). Those of worker
-- $3 among $4 (attempts over, outcomes not stored yet) are left out.
SELECT t.kind,
       array(SELECT coalesce(t.payload ->> f.name, '')
             FROM unnest($2::text[]) WITH ORDINALITY AS f(name, n) ORDER BY f.n) AS parts,
       count(*) AS n
FROM gladd_tasks AS t
WHERE t.owner IS NOT NULL AND t.state = 'running' AND t.kind = ANY($1::text[])
  AND NOT (t.owner = $3 AND t.id = ANY($4::bigint[]))
GROUP BY 1, 2;

-- name: gated_candidates
-- $1 worker, $2 now, $3 kinds, $4 scan, $5 partition fields: the first $4 due pending tasks
-- of $3 in claim order (the claim index). Not locked: the gates' locks already order every
-- gated claim, and gated_start re-checks each row it takes (locking all $4 rows read would
-- write a row lock per candidate on every claim, most of them held back and left alone).
WITH seen AS (  -- a claim is a sign of life, as a heartbeat is
    INSERT INTO gladd_workers AS w (id, last_seen) VALUES ($1, $2)
    ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen
    WHERE w.last_seen < excluded.last_seen
)
SELECT t.id, t.kind,
       array(SELECT coalesce(t.payload ->> f.name, '')
             FROM unnest($5::text[]) WITH ORDINALITY AS f(name, n) ORDER BY f.n) AS parts
FROM gladd_tasks AS t
WHERE t.state = 'pending' AND t.run_at <= $2 AND t.kind = ANY($3::text[])
ORDER BY t.priority DESC, t.run_at, t.id
LIMIT $4;

-- name: gated_start
-- $1 worker, $2 now, $3 ids (read by gated_candidates), $4 claim id: as the claim does. A
-- row changed meanwhile (cancelled, or taken by a node whose policies gate it otherwise) is
-- re-checked once its writer commits, and left out when no longer pending.
UPDATE gladd_tasks AS t
SET state = 'running', owner = $1, attempt = t.attempt + 1, token = t.token + 1,
    deadline = $2::timestamptz + make_interval(secs => t.timeout),
    claim_id = $4, updated_at = $2, started_at = coalesce(t.started_at, $2),
    timeline = gladd_claimed(t.timeline, $1, $5::text, t.token + 1, t.attempt + 1)
WHERE t.id = ANY($3::bigint[]) AND t.state = 'pending'
RETURNING t.*;

-- name: limit_buckets
SELECT gate, part, tokens, at FROM gladd_limit_tokens WHERE gate = ANY($1::text[]);

-- name: limit_bucket_store
INSERT INTO gladd_limit_tokens AS b (gate, part, tokens, at)
SELECT * FROM unnest($1::text[], $2::text[], $3::double precision[], $4::timestamptz[])
ON CONFLICT (gate, part) DO UPDATE SET tokens = excluded.tokens, at = excluded.at;

-- name: sweep_limits
-- $1 now, $2 the oldest bucket kept: expired pauses and idle buckets, counted together.
WITH pauses AS (
    DELETE FROM gladd_pauses WHERE until <= $1 RETURNING 1
), buckets AS (
    DELETE FROM gladd_limit_tokens WHERE at < $2 RETURNING 1
)
SELECT (SELECT count(*) FROM pauses) + (SELECT count(*) FROM buckets);

-- name: pauses
SELECT target, reason, until, by, created_at FROM gladd_pauses
WHERE until IS NULL OR until > $1
ORDER BY target;

-- name: pause
-- Every node's listener hears the change on channel gladd_pauses (at commit).
WITH stored AS (
    INSERT INTO gladd_pauses AS p (target, reason, until, by, created_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (target) DO UPDATE SET
        reason = excluded.reason, until = excluded.until, by = excluded.by,
        created_at = excluded.created_at
    RETURNING p.target
)
SELECT pg_notify('gladd_pauses', target) FROM stored;

-- name: resume
WITH removed AS (
    DELETE FROM gladd_pauses WHERE target = $1
    RETURNING target, reason, until, by, created_at
)
SELECT r.*, pg_notify('gladd_pauses', r.target) AS notified FROM removed AS r;

-- name: ring
SELECT pg_notify('gladd_tasks', '');

-- The kinds catalogue (0006_kinds.sql). A publication is kinds_forget_node, then
-- kinds_publish, in one transaction: readers see a node's old set or its new one.

-- name: kinds_forget_node
DELETE FROM gladd_kinds WHERE node = $1;

-- name: kinds_publish
-- $1 node, $2 when, then the kinds as parallel arrays (schemas as JSON text, NULL: any;
-- services as JSON arrays: unnest would flatten an array of arrays).
INSERT INTO gladd_kinds (name, node, plugin, description, payload_schema, services, published_at)
SELECT k.name, $1, k.plugin, k.description, k.payload_schema::jsonb,
    ARRAY(SELECT jsonb_array_elements_text(k.services::jsonb)), $2
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    AS k (name, plugin, description, payload_schema, services);

-- name: kinds_catalogue
SELECT name, node, plugin, description, payload_schema, services, published_at FROM gladd_kinds
ORDER BY name COLLATE "C", node COLLATE "C";

-- Progress (0005_progress.sql). Applies only while the task is running under the token
-- named, as outcomes do; the waiters hear of the tasks stored on gladd_task_events.

-- name: progress
-- $1 now; $2.. one array per ProgressReport field. Returns the (id, token) stored (and
-- NULL rows).
WITH stored AS (
    UPDATE gladd_tasks AS t
    SET progress = r.fraction, progress_message = r.message, progress_at = $1,
        progress_attempt = r.attempt
    FROM unnest($2::bigint[], $3::bigint[], $4::double precision[], $5::text[], $6::integer[])
         AS r(id, token, fraction, message, attempt)
    WHERE t.id = r.id AND t.token = r.token AND t.state = 'running'
    RETURNING t.id, t.token
)
SELECT id, token, NULL::void AS note FROM stored
UNION ALL
SELECT NULL, NULL, pg_notify('gladd_task_events', string_agg(id::text, ','))
FROM (SELECT id, (row_number() OVER () - 1) / 500 AS note FROM stored) AS d
GROUP BY note;

-- Breaker overrides (0008_breakers.sql), announced on gladd_pauses as pauses are.

-- name: breaker_overrides
SELECT name, state, by, created_at FROM gladd_breakers ORDER BY name COLLATE "C";

-- name: isolate_breaker
WITH stored AS (
    INSERT INTO gladd_breakers AS b (name, state, by, created_at)
    VALUES ($1, 'isolated', $2, $3)
    ON CONFLICT (name) DO UPDATE SET by = excluded.by, created_at = excluded.created_at
    RETURNING b.name
)
SELECT pg_notify('gladd_pauses', 'breaker:' || name) FROM stored;

-- name: reset_breaker
WITH removed AS (
    DELETE FROM gladd_breakers WHERE name = $1 RETURNING name, state, by, created_at
)
SELECT r.*, pg_notify('gladd_pauses', 'breaker:' || r.name) AS notified FROM removed AS r;

-- Listing, counts and workers (issue 14; the rules in gladd/store/listing.py).

-- name: task_stats
-- The counts: the deltas summed. Right whatever runs beside it: a fold (below) deletes
-- deltas and inserts their sum in one statement, so a snapshot sees one or the other.
SELECT kind, state, sum(n) AS n FROM gladd_task_counts GROUP BY kind, state HAVING sum(n) <> 0;

-- name: task_stats_fold_lock
-- One fold at a time (transaction-scoped; a read that does not get it only sums).
SELECT pg_try_advisory_xact_lock($1);

-- name: task_stats_fold
-- Folds the deltas the triggers appended into one row per (kind, state) and returns the
-- totals, in one statement, under task_stats_fold_lock: its snapshot, taken once the lock
-- is held, sees the previous fold's rows, and no one else deletes. Deltas committed while
-- it runs are not in its snapshot: neither deleted nor counted, the next read has them.
WITH gone AS (
    DELETE FROM gladd_task_counts RETURNING kind, state, n
), folded AS (
    INSERT INTO gladd_task_counts (kind, state, n)
    SELECT kind, state, sum(n) FROM gone GROUP BY kind, state HAVING sum(n) <> 0
    RETURNING kind, state, n
)
SELECT kind, state, n FROM folded;

-- name: task_filter
-- The conditions of `find` and `count_matching` (gladd/store/postgres/listing.py puts them
-- in both): below the id $6 (the cursor's, never NULL, so an index condition even in a
-- generic plan); each filter is skipped when its parameter is NULL (states: empty).
id < $6
  AND (cardinality($1::text[]) = 0 OR state = ANY($1::text[]))
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(errors) AS e
        WHERE strpos(lower((e ->> 'type') || ': ' || (e ->> 'message')), lower($3)) > 0))
  AND ($4::timestamptz IS NULL OR created_at >= $4)
  AND ($5::timestamptz IS NULL OR created_at < $5);

-- name: find
-- Newest first; WHERE: task_filter.
SELECT * FROM gladd_tasks WHERE {task_filter} ORDER BY id DESC LIMIT $7;

-- name: find_ids
-- find's ids only (a bulk action's pages); WHERE: task_filter.
SELECT id FROM gladd_tasks WHERE {task_filter} ORDER BY id DESC LIMIT $7;

-- name: count_matching
SELECT count(*) FROM gladd_tasks WHERE {task_filter};

-- name: worker_rows
-- Running tasks per owner through gladd_tasks_running (owner is set exactly while running).
SELECT w.id, w.last_seen,
       (SELECT count(*) FROM gladd_tasks AS t WHERE t.owner = w.id) AS running
FROM gladd_workers AS w
ORDER BY w.id;
