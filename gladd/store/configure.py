"""The store a configuration asks for: URL from settings, tuning from ``[database]``;
and what a reload changes on an open store (see :meth:`~gladd.store.base.Store.prepare_retune`)."""

from __future__ import annotations

from collections.abc import Callable

from gladd import tracing
from gladd.policies import Policies
from gladd.store.base import Store, StoreGuard
from gladd.store.registry import backend_for
from gladd.store.traced import traced_store


def configured_store(
    url: str,
    policies: Policies,
    *,
    guard: StoreGuard | None = None,
    waits_for_work: bool = True,
) -> Store:
    """An unopened store for ``url``; raises ConfigError for an unsupported scheme.

    ``guard`` wraps each operation of a store that talks to a server (the daemon passes the
    database guard: the ``[database]`` retry policy on connection errors). With store
    spans on (:mod:`gladd.tracing`), each operation of it is a span. ``waits_for_work=False``
    is for a store that never calls ``wait_for_work`` (``gladd.Client``): it does not listen
    for new tasks (PostgreSQL: no LISTEN, so no notification per insert comes back to it)."""
    backend = backend_for(url)
    options = backend.tuning(policies.database, guard)
    if not waits_for_work:
        options.update(backend.enqueue_only)
    return traced_store(backend.make(url, **options), tracing.current())


def prepare_retune(store: Store, policies: Policies) -> Callable[[], None]:
    """What a reload changes on an open store, checked now and applied by the returned
    commit, which cannot fail."""
    return store.prepare_retune(policies.database)
