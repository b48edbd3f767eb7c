"""The producer: claims bounded by what :meth:`Producer.admit` allows, and the drain."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from gladd.executor.kinds import KindRegistry, RegisteredKind
from gladd.executor.ledger import Ledger, Running
from gladd.executor.producer import CLAIM_BATCH, Admission, Producer
from gladd.executor.runner import utcnow
from gladd.policies import Policies
from gladd.resilience.clock import FakeClock
from gladd.store import NewTask, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.executor.test_executor import policies

pytestmark = pytest.mark.anyio


def producer_on(
    store: MemoryStore,
    ledger: Ledger,
    p: Policies,
    started: list[int],
    producer: type[Producer] = Producer,
) -> Producer:
    async def attempt(running: Running) -> None:
        started.append(running.task.id)
        ledger.ran(running.task.id)

    kinds = KindRegistry([RegisteredKind(name=n, handler=lambda ctx, payload: None) for n in "ab"])
    return producer(
        store=store,
        kinds=kinds,
        policies=lambda: p,
        worker_id="w1",
        ledger=ledger,
        attempt=attempt,
        now=utcnow,
        clock=FakeClock(),
        store_health=lambda error: None,
    )


class OnlyA(Producer):
    """Admits kind ``a`` only, as a pause of kind ``b`` would."""

    def admit(self, policies: Policies) -> Admission | None:
        admission = super().admit(policies)
        return None if admission is None else dataclasses.replace(admission, kinds=["a"])


async def test_admission_is_the_free_slots_capped_at_one_claim_batch() -> None:
    store, ledger = MemoryStore(), Ledger()
    await store.open()
    for _ in range(3):
        await store.enqueue(NewTask(kind="a"), now=utcnow())
    producer = producer_on(store, ledger, policies(concurrency=3), [])
    first = producer.admit(policies(concurrency=3))
    assert first is not None
    assert (first.limit, first.kinds, first.split.gated) == (3, ("a", "b"), ())
    for task in await store.claim(worker="w1", limit=2, now=utcnow()):
        ledger.hold(task)
    second = producer.admit(policies(concurrency=3))
    assert second is not None
    assert (second.limit, second.kinds) == (1, ("a", "b"))
    assert producer.admit(policies(concurrency=2)) is None  # full: wait for a slot
    big = policies(concurrency=500)
    admission = producer.admit(big)
    assert admission is not None
    assert admission.limit == CLAIM_BATCH


async def test_a_narrower_admission_is_what_the_store_is_asked_for() -> None:
    store, ledger = MemoryStore(), Ledger()
    await store.open()
    a = (await store.enqueue(NewTask(kind="a"), now=utcnow())).id
    b = (await store.enqueue(NewTask(kind="b"), now=utcnow())).id
    started: list[int] = []
    producer = producer_on(store, ledger, policies(), started, OnlyA)
    async with anyio.create_task_group() as tg:
        await tg.start(producer.run)
        await anyio.wait_all_tasks_blocked()
        producer.stop()
    assert started == [a]
    paused = await store.get(b)
    assert paused is not None
    assert paused.state is TaskState.PENDING
    assert producer.claimed == 1
