"""A store whose every operation is a span (``GLADD_OTEL_STORE_SPANS=true``): wraps any
backend, so the spans are the same on each, named by the :class:`~gladd.store.base.Store`
method (``gladd.store claim``) with the database system and the masked URL.

Only while traces are on; the wrapper is not even built otherwise. ``wait_for_work`` (an idle
executor's long wait for a wake-up) is not a span: it is not a query. Attributes, such as
``pause_epoch``, are read through from the wrapped store each time, never copied.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from gladd.store.base import Store
from gladd.tracing import Tracing

TRACED = frozenset(
    {
        "open",
        "migration_status",
        "enqueue",
        "enqueue_many",
        "schedule_states",
        "advance_schedule",
        "forget_schedules",
        "publish_kinds",
        "kinds_catalogue",
        "claim",
        "claim_gated",
        "limit_usage",
        "pauses",
        "pause",
        "resume",
        "breaker_overrides",
        "isolate_breaker",
        "reset_breaker",
        "ring",
        "sweep_limits",
        "finish",
        "record_progress",
        "heartbeat",
        "rescue",
        "forget_worker",
        "get",
        "list",
        "cancel",
        "retry",
        "cancel_many",
        "retry_many",
        "purge",
        "count_purgeable",
        "counts",
        "stats",
        "find",
        "find_ids",
        "count_matching",
        "workers",
    }
)


class TracedStore:
    """``store``, each traced operation inside a span; everything else passed through."""

    def __init__(self, store: Store, traces: Tracing) -> None:
        self._store = store
        self._traces = traces
        scheme = urlsplit(store.url).scheme
        self._system = {"postgres": "postgresql", "sqlite": "sqlite"}.get(scheme, scheme)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in TRACED:
            return attribute
        return self._traced(name, attribute)

    def _traced(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            with self._traces.storing(name, self._system, self._store.url):
                return await method(*args, **kwargs)

        return traced


def traced_store(store: Store, traces: Tracing | None) -> Store:
    """``store`` with spans when ``traces`` asks for store spans, else ``store`` itself."""
    if traces is None or not traces.store_spans:
        return store
    return cast(Store, TracedStore(store, traces))
