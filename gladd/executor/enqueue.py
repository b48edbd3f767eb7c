"""Storing one new task: the last step of every enqueue (:class:`TaskService` for the CLI,
HTTP and the Python API; a handler's ``ctx.enqueue``), inside its PRODUCER span when traces
are on, so the task keeps the ``traceparent`` its attempts will continue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from gladd import tracing
from gladd.store import Enqueued, NewTask


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
        sending.stored(enqueued.task.id, created=enqueued.created)
    return enqueued
