"""Seeing inside a running gladd: health checks, Prometheus metrics, pool alerts, loop lag.

Deliberately empty of imports. Nothing below reads from here: the store measures its own
acquire waits (:mod:`gladd.store.acquire`), and what the executor records for the observers
lives below it (:mod:`gladd.instruments.activity`, :mod:`gladd.executor.outcomes`); they read
its frozen ``statistics()`` snapshot.

- :mod:`.pool` — pool alert rules (pure) and the sampler that applies them;
- :mod:`.lag` — the event-loop lag monitor and its stall watcher thread;
- :mod:`.reloads` — the record of policy reloads;
- :mod:`.watched` — every source the health checks and metrics read;
- :mod:`.health` — the health board components push their checks to, read by the admin API;
- :mod:`.health_checks` — the background checks that publish to the health board;
- :mod:`.metrics` — the Prometheus registry, read at scrape time.
"""
