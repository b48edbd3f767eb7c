"""Seeing inside a running gladd: health checks, Prometheus metrics, pool alerts, loop lag.

Deliberately empty of imports. Neither the store nor the executor imports anything from
here: what they record for the observers lives below them (:mod:`gladd.instruments.acquire`,
:mod:`gladd.instruments.activity`, :mod:`gladd.executor.outcomes`), and the observers read
the executor's frozen ``statistics()`` snapshot.

- :mod:`.pool` — pool alert rules (pure) and the sampler that applies them;
- :mod:`.lag` — the event-loop lag monitor and its stall watcher thread;
- :mod:`.reloads` — the record of policy reloads;
- :mod:`.watched` — every source the health checks and metrics read;
- :mod:`.health` — the health board components push their checks to, read by the admin API;
- :mod:`.health_checks` — the background checks that publish to the health board;
- :mod:`.metrics` — the Prometheus registry, read at scrape time.
"""
