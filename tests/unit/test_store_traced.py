"""The traced store wrapper (gladd/store/traced.py): every store operation is a span, and
what is not an operation (``pause_epoch``, ``wait_for_work``) passes through live."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import cast

import pytest

from gladd.store.base import Store
from gladd.store.gates import Gate, Pause
from gladd.store.memory import MemoryStore
from gladd.store.traced import TRACED, traced_store
from gladd.tracing import Tracing

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NOT_QUERIES = {"close", "wait_for_work"}  # an idle wait is no query; close ends the spans


class Spans:
    store_spans = True

    def __init__(self) -> None:
        self.names: list[str] = []

    @contextmanager
    def storing(self, operation: str, system: str, url: str) -> Iterator[None]:
        self.names.append(operation)
        yield


def test_every_async_operation_of_the_store_is_traced() -> None:
    operations = {
        name
        for name, member in inspect.getmembers(Store)
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }
    assert operations - NOT_QUERIES == set(TRACED)


async def test_flow_operations_are_spans_and_the_pause_epoch_reads_through() -> None:
    spans = Spans()
    inner = MemoryStore()
    store = traced_store(inner, cast(Tracing, spans))
    await store.open()
    gate = Gate(name="kind:a", kinds=("a",), concurrency=1)
    await store.claim_gated(worker="w", limit=1, now=NOW, kinds=["a"], gates=[gate])
    await store.limit_usage([gate], now=NOW)
    epoch = store.pause_epoch
    await store.pause(Pause(target="kind:a", reason="r", until=None, by="cli:x", created_at=NOW))
    assert store.pause_epoch == inner.pause_epoch != epoch
    await store.pauses(now=NOW)
    await store.resume("kind:a", now=NOW)
    await store.ring()
    await store.sweep_limits(now=NOW, idle=60)
    assert spans.names == [
        "open",
        "claim_gated",
        "limit_usage",
        "pause",
        "pauses",
        "resume",
        "ring",
        "sweep_limits",
    ]
