"""Seeing inside a running gladd: health checks, Prometheus metrics, pool alerts, loop lag.

Deliberately empty of imports: the executor imports :mod:`gladd.observe.activity` on its
hot path, and should not pull in the rest.

- :mod:`.activity` — what is running now (task kind, plugin), for blaming a blocked loop;
- :mod:`.pool` — pool alert rules (pure) and the sampler that applies them;
- :mod:`.lag` — the event-loop lag monitor and its stall watcher thread;
- :mod:`.reloads` — the record of policy reloads;
- :mod:`.watched` — every source the health checks and metrics read;
- :mod:`.health_checks` — the background checks that publish to the health board;
- :mod:`.metrics` — the Prometheus registry, read at scrape time.
"""
