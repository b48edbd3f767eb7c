-- gladd SQLite schema, version 2: each task keeps the W3C trace context of its enqueue.
-- NULL for tasks stored without one (traces off, or enqueued before version 2); attempts
-- continue the trace it names (gladd/tracing.py).

ALTER TABLE gladd_tasks ADD COLUMN traceparent TEXT;
