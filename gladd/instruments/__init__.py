"""Low-level instruments: light registries the hot paths write and the observers read.

The bottom layer: nothing here imports the rest of gladd, so the executor (and anything
else below :mod:`gladd.observe`) can record what it does without depending on the
observers that read it.

- :mod:`.activity` — what each asyncio task is doing (task kind, plugin), for blaming a
  blocked loop;
- :mod:`.acquire` — how long callers wait for a pooled connection, measured by the
  PostgreSQL store on every query.
"""
