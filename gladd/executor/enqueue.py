"""Storing new tasks: the last step of every enqueue (:class:`TaskService` for the CLI,
HTTP and the Python API; a handler's ``ctx.enqueue``), inside its PRODUCER span when traces
are on, so the task keeps the ``traceparent`` its attempts will continue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from gladd import tracing
from gladd.store import Enqueued, NewTask, Store


class Enqueuer(Protocol):
    """What stores one task: a :class:`~gladd.store.Store`, or a
    :class:`~gladd.executor.group_commit.GroupCommit` over one."""

    async def enqueue(self, task: NewTask, *, now: datetime) -> Enqueued: ...


async def store_new_task(
    store: Enqueuer, spec: NewTask, *, now: datetime, trace: Mapping[str, str] | None = None
) -> Enqueued:
    """``store.enqueue(spec)``; ``trace`` holds a caller's ``traceparent`` (and
    ``tracestate``) from outside this process, else the current span is the parent."""
    traces = tracing.current()
    if traces is None:
        return await store.enqueue(spec, now=now)
    with traces.producing(spec.kind, trace) as sending:
        enqueued = await store.enqueue(replace(spec, traceparent=sending.traceparent), now=now)
        sending.stored(enqueued.id, created=enqueued.created)
    return enqueued


BATCH_DESTINATION = "gladd.batch"
"""The span's destination for a batch of several kinds (OpenTelemetry's messaging
conventions name one destination per span)."""


async def store_new_tasks(
    store: Store,
    specs: Sequence[NewTask],
    *,
    now: datetime,
    trace: Mapping[str, str] | None = None,
) -> list[Enqueued]:
    """``store.enqueue_many(specs)``, one transaction. With traces on, the whole batch is
    one PRODUCER span (``send KIND``, or ``send gladd.batch`` for several kinds) and every
    task keeps its ``traceparent``: one span, not thousands, for one store call."""
    traces = tracing.current()
    if traces is None or not specs:
        return await store.enqueue_many(specs, now=now)
    kinds = {spec.kind for spec in specs}
    destination = kinds.pop() if len(kinds) == 1 else BATCH_DESTINATION
    with traces.producing(destination, trace) as sending:
        traced = [replace(spec, traceparent=sending.traceparent) for spec in specs]
        enqueued = await store.enqueue_many(traced, now=now)
        sending.stored_batch(len(enqueued), created=sum(e.created for e in enqueued))
    return enqueued
