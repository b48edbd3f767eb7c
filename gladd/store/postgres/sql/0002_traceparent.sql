-- gladd PostgreSQL schema, version 2: each task keeps the W3C trace context of its enqueue.
-- NULL for tasks stored without one (traces off, or enqueued before version 2); attempts
-- continue the trace it names (gladd/tracing.py). A nullable column without a default:
-- adding it rewrites nothing and holds its lock for an instant.

ALTER TABLE gladd_tasks ADD COLUMN traceparent text;
