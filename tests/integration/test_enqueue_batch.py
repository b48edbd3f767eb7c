"""Batch enqueue through the TaskService, on every registered store: every item checked as
a single enqueue is, all before any is stored, and the batch one transaction — all of it
stored, or none.

Stores are made as the store contract makes them (``MAKERS``), the kinds are the shipped
ones (built-ins and ``http.request``), time is fixed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gladd.errors import BatchRejected, BatchTooLarge, ItemProblem, TaskRejected
from gladd.executor.service import MAX_BATCH, TaskService
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import parse_policies
from gladd.store import Store, TaskState
from gladd.store.factory import store_from_url
from tests.integration.test_store_contract import MAKERS

pytestmark = pytest.mark.anyio

NOW = datetime(2030, 1, 1, tzinfo=UTC)
POLICIES = parse_policies(
    b'[services.hooks]\nhosts = ["127.0.0.1"]\n', source="policies.toml"
).policies


@pytest.fixture
async def service(backend: tuple[str, str], anyio_backend: str) -> AsyncIterator[TaskService]:
    store = store_from_url(backend[1])
    await store.open()
    await MAKERS[backend[0]].empty(backend[1])
    try:
        yield TaskService(store, known_kinds(POLICIES), lambda: POLICIES, now=lambda: NOW)
    finally:
        await store.close()


async def stored(store: Store) -> list[tuple[str, Any]]:
    return sorted((t.kind, t.payload) for t in await store.list(limit=1000))


async def refused(service: TaskService, items: list[Any]) -> list[ItemProblem]:
    with pytest.raises(BatchRejected) as caught:
        await service.enqueue_many(items)
    assert await stored(service.store) == [], "a refused batch stored something"
    return list(caught.value.problems)


async def test_a_batch_is_stored_in_order_with_each_items_fields(service: TaskService) -> None:
    enqueued = await service.enqueue_many(
        [
            {"kind": "gladd.noop"},
            {"kind": "gladd.sleep", "payload": {"seconds": 1}, "delay": 30, "priority": 7},
            {"kind": "gladd.noop", "payload": {"n": 3}, "timeout": 2.5, "unique_key": "k"},
        ]
    )
    assert [e.created for e in enqueued] == [True, True, True]
    ids = [e.id for e in enqueued]
    assert ids == sorted(ids)
    first, second, third = [await service.get(i) for i in ids]
    assert (first.kind, first.payload, first.run_at, first.priority) == ("gladd.noop", {}, NOW, 0)
    assert second.run_at == NOW + timedelta(seconds=30)
    assert (second.payload, second.priority) == ({"seconds": 1}, 7)
    assert (third.timeout, third.unique_key, third.state) == (2.5, "k", TaskState.PENDING)


async def test_a_batch_without_unique_keys_keeps_every_items_fields_in_order(
    service: TaskService,
) -> None:
    """No item has a unique key (PostgreSQL's lean statement): each id is its own item's."""
    items: list[dict[str, Any]] = [
        {"kind": "gladd.sleep", "payload": {"seconds": n}, "priority": n, "delay": n}
        for n in range(1, 6)
    ]
    enqueued = await service.enqueue_many([*items, {"kind": "gladd.noop", "timeout": 2.5}])
    assert [e.created for e in enqueued] == [True] * 6
    ids = [e.id for e in enqueued]
    assert ids == sorted(ids)
    assert len(set(ids)) == 6
    stored = [await service.get(i) for i in ids]
    assert [(t.payload, t.priority, t.run_at) for t in stored[:5]] == [
        ({"seconds": n}, n, NOW + timedelta(seconds=n)) for n in range(1, 6)
    ]
    assert (stored[5].kind, stored[5].timeout) == ("gladd.noop", 2.5)


async def test_one_refused_item_stores_nothing_and_every_problem_is_listed(
    service: TaskService,
) -> None:
    problems = await refused(
        service,
        [
            {"kind": "gladd.noop"},
            {"kind": "nope"},
            {"kind": "gladd.sleep", "payload": {"seconds": "long"}},
            {"kind": "http.request", "payload": {"url": "https://elsewhere.example/"}},
            {"kind": "gladd.noop", "priority": 5000},
            {"kind": "gladd.noop", "delay": -1},
            {"kind": "gladd.noop", "timeout": 0},
            {"kind": "gladd.noop", "unique_key": "a\x00"},
            {"kind": "gladd.noop", "payload": {"x": "\udfff"}},
            {"kind": "gladd.noop", "colour": "red"},
            {"payload": {}},
            "gladd.noop",
            {"kind": "gladd.noop"},
        ],
    )
    assert [(p.index, p.field) for p in problems] == [
        (1, "kind"),
        (2, "payload"),
        (3, "payload"),
        (4, "priority"),
        (5, "delay"),
        (6, "timeout"),
        (7, "unique_key"),
        (8, "payload"),
        (9, ""),
        (10, "kind"),
        (11, ""),
    ]
    messages = [p.render() for p in problems]
    assert messages[0].startswith("item 1: kind: unknown task kind 'nope' (known kinds: gladd.")
    assert messages[1].startswith("item 2: payload: payload for gladd.sleep is invalid: seconds")
    assert messages[2].startswith(
        "item 3: payload: http.request task refused: http: no service claims host elsewhere.example"
    )
    assert messages[3] == (
        "item 4: priority: priority must be a whole number from -1000 to 1000 (got 5000)"
    )
    assert messages[8] == (
        "item 9: unknown field 'colour' (fields: kind, payload, delay, priority, unique_key, "
        "timeout)"
    )
    assert messages[9] == "item 10: kind: required"
    assert messages[10] == "item 11: an item must be an object (got 'gladd.noop')"


async def test_each_item_gets_the_very_refusal_a_single_enqueue_gets(
    service: TaskService,
) -> None:
    cases: list[dict[str, Any]] = [
        {"kind": "nope"},
        {"kind": 17},
        {"kind": "gladd.sleep", "payload": {"seconds": -1}},
        {"kind": "gladd.noop", "delay": float("nan")},
        {"kind": "gladd.noop", "priority": True},
        {"kind": "gladd.noop", "unique_key": 5},
    ]
    for case in cases:
        with pytest.raises(TaskRejected) as single:
            await service.enqueue(**case)
        [problem] = await refused(service, [case])
        assert problem.message == str(single.value)


async def test_unique_keys_within_a_batch_and_against_a_stored_task(service: TaskService) -> None:
    held = await service.enqueue("gladd.noop", unique_key="held")
    enqueued = await service.enqueue_many(
        [
            {"kind": "gladd.noop", "unique_key": "new"},
            {"kind": "gladd.noop", "unique_key": "held"},
            {"kind": "gladd.noop", "unique_key": "new"},
            {"kind": "gladd.noop"},
        ]
    )
    assert [e.created for e in enqueued] == [True, False, False, True]
    assert enqueued[1].id == held.id
    assert enqueued[2].id == enqueued[0].id
    assert len(await service.store.list(limit=100)) == 3


async def test_a_store_refusal_mid_batch_stores_none_of_it(service: TaskService) -> None:
    # An empty unique key passes the service's checks; the store refuses it, inside the
    # batch's one transaction, after the items before it were written.
    items = [{"kind": "gladd.noop", "unique_key": f"k{n}"} for n in range(50)]
    with pytest.raises(TaskRejected, match="unique_key"):
        await service.enqueue_many([*items, {"kind": "gladd.noop", "unique_key": ""}])
    assert await stored(service.store) == []
    assert len(await service.enqueue_many(items)) == 50  # the keys were never held


async def test_empty_and_oversized_batches(service: TaskService) -> None:
    assert await service.enqueue_many([]) == []
    with pytest.raises(BatchTooLarge, match=f"at most {MAX_BATCH} tasks \\(got {MAX_BATCH + 1}\\)"):
        await service.enqueue_many([{"kind": "gladd.noop"}] * (MAX_BATCH + 1))
    assert await stored(service.store) == []


async def test_a_full_batch_is_one_store_call(service: TaskService) -> None:
    enqueued = await service.enqueue_many(
        [{"kind": "gladd.noop", "payload": {"n": n}} for n in range(MAX_BATCH)]
    )
    assert len(enqueued) == MAX_BATCH
    assert [(await service.get(enqueued[-1].id)).payload] == [{"n": MAX_BATCH - 1}]


async def test_refusals_a_caller_found_already_are_listed_with_the_services(
    service: TaskService,
) -> None:
    earlier = [ItemProblem(index=1, field="delay", message="not a duration")]
    with pytest.raises(BatchRejected) as caught:
        await service.enqueue_many(
            [{"kind": "nope"}, {}, {"kind": "gladd.noop"}, {"kind": 3}], refused=earlier
        )
    assert [(p.index, p.field) for p in caught.value.problems] == [
        (0, "kind"),
        (1, "delay"),
        (3, "kind"),
    ]
    assert str(caught.value).splitlines()[0] == (
        "batch of 4 refused, nothing stored: 3 item(s) refused"
    )
