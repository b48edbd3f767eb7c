"""The Store contract: the same assertions against every implementation.

Time is passed explicitly from a fixed base, so every timestamp is asserted exactly.
Parametrised from the store registry: every registered store runs it, made by its entry in
``MAKERS``. The PostgreSQL parameter needs a server (see ``postgres_url`` in
tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

from gladd.errors import StoreError, TaskRejected, TaskStateConflict
from gladd.store import (
    Cancelled,
    Failed,
    KindSpec,
    NewTask,
    Outcome,
    PublishedKind,
    Released,
    ScheduleState,
    Store,
    Succeeded,
    Task,
    TaskError,
    TaskState,
)
from gladd.store.factory import store_from_url
from gladd.store.registry import BACKENDS

pytestmark = pytest.mark.anyio

BASE = datetime(2026, 1, 1, tzinfo=UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PENDING, RUNNING = TaskState.PENDING, TaskState.RUNNING
SUCCEEDED, DEAD, CANCELLED = TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def error(attempt: int = 1, when: float = 0) -> TaskError:
    return TaskError(type="ValueError", message="boom", attempt=attempt, at=at(when))


async def _emptied(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "TRUNCATE gladd_tasks, gladd_workers, gladd_schedules, gladd_limits, "
            "gladd_limit_tokens, gladd_pauses, gladd_kinds, gladd_breakers RESTART IDENTITY"
        )
    finally:
        await conn.close()


async def _fresh_already(url: str) -> None:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Maker:
    """How the suite gets an empty store of one registered backend."""

    url: Callable[[pytest.FixtureRequest, Path], str]  # outside the event loop
    empty: Callable[[str], Awaitable[None]] = _fresh_already  # after open, for a shared one
    marks: tuple[pytest.MarkDecorator, ...] = ()


MAKERS = {
    "memory": Maker(url=lambda request, tmp: "memory://"),
    "sqlite": Maker(url=lambda request, tmp: f"sqlite:///{tmp / 'tasks.db'}"),
    # The session's throwaway database (postgres_url in tests/conftest.py), emptied per test.
    "postgresql": Maker(
        url=lambda request, tmp: request.getfixturevalue("postgres_url"),
        empty=_emptied,
        marks=(pytest.mark.postgres,),
    ),
}


def test_every_registered_store_has_a_maker() -> None:
    assert sorted(MAKERS) == sorted(b.name for b in BACKENDS)


def make_store(backend: tuple[str, str]) -> Store:
    return store_from_url(backend[1])


async def add(store: Store, now: float = 0, **fields: Any) -> Task:
    fields.setdefault("kind", "email")
    return await get(store, (await store.enqueue(NewTask(**fields), now=at(now))).id)


async def claim_one(store: Store, worker: str = "w1", now: float = 0) -> Task:
    [task] = await store.claim(worker=worker, limit=1, now=at(now))
    return task


async def get(store: Store, task_id: int) -> Task:
    task = await store.get(task_id)
    assert task is not None
    return task


# -- enqueue --------------------------------------------------------------------------------


async def test_enqueue_fills_in_the_defaults(store: Store) -> None:
    enqueued = await store.enqueue(NewTask(kind="email"), now=at(5))
    assert enqueued.created
    task = await get(store, enqueued.id)
    assert task.id >= 1
    assert (task.kind, task.payload, task.state, task.priority) == ("email", {}, PENDING, 0)
    assert (task.run_at, task.created_at, task.updated_at) == (at(5), at(5), at(5))
    assert (task.attempt, task.max_attempts, task.timeout, task.unique_key) == (0, 5, None, None)
    assert (task.owner, task.token, task.rescues, task.deadline) == (None, 0, 0, None)
    assert (task.cancel_requested, task.result, task.errors, task.finished_at) == (
        False,
        None,
        (),
        None,
    )
    assert await store.get(task.id) == task


async def test_enqueue_keeps_every_field_given(store: Store) -> None:
    new = NewTask(
        kind="sms",
        payload={"to": "+33", "n": [1, 2.5, None, True], "nested": {"é": "ü"}},
        priority=-7,
        run_at=at(60),
        max_attempts=3,
        timeout=2.5,
        unique_key="sms:+33",
    )
    task = await get(store, (await store.enqueue(new, now=at(0))).id)
    assert (task.kind, task.payload, task.priority, task.run_at) == (
        "sms",
        new.payload,
        -7,
        at(60),
    )
    assert (task.max_attempts, task.timeout, task.unique_key) == (3, 2.5, "sms:+33")
    assert await store.get(task.id) == task


async def test_datetimes_come_back_utc_and_exact_to_the_microsecond(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    run_at = datetime(2026, 3, 4, 5, 6, 7, 123457, tzinfo=paris)
    now = BASE + timedelta(microseconds=999_999)
    task = await get(store, (await store.enqueue(NewTask(kind="k", run_at=run_at), now=now)).id)
    stored = await get(store, task.id)
    assert stored.run_at == run_at
    assert stored.created_at == now
    for moment in (stored.run_at, stored.created_at, stored.updated_at):
        assert moment.utcoffset() == timedelta(0)


async def test_payloads_cannot_be_changed_through_the_objects_passed_or_returned(
    store: Store,
) -> None:
    payload = {"items": [1, 2]}
    task = await get(store, (await store.enqueue(NewTask(kind="k", payload=payload), now=BASE)).id)
    payload["items"].append(3)
    task.payload["items"].append(4)
    fetched = await get(store, task.id)
    fetched.payload["items"].append(5)
    assert (await get(store, task.id)).payload == {"items": [1, 2]}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"kind": ""}, "kind"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0.0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"priority": 2**31}, "priority"),
        ({"payload": {"a": {1, 2}}}, "payload"),
        ({"payload": float("nan")}, "payload"),
        ({"run_at": datetime(2026, 1, 1)}, "run_at"),  # naive on purpose
        ({"unique_key": ""}, "unique_key"),
        ({"traceparent": "00-abc-def-01"}, "traceparent"),
        ({"traceparent": "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"}, "traceparent"),
        ({"traceparent": TRACEPARENT + "\n"}, "traceparent"),
        ({"scheduled_for": datetime(2026, 1, 1)}, "scheduled_for"),  # naive on purpose
        ({"schedule": ""}, "schedule"),
        ({"schedule": "nightly\x00"}, "schedule"),
    ],
)
async def test_enqueue_refuses_what_no_store_can_keep(
    store: Store, fields: dict[str, Any], reason: str
) -> None:
    fields = {"kind": "k", **fields}
    with pytest.raises(TaskRejected, match=reason):
        await store.enqueue_many([NewTask(kind="ok"), NewTask(**fields)], now=BASE)
    assert await store.list() == []


async def test_a_tasks_trace_context_is_kept_through_claim_retry_and_listing(
    store: Store,
) -> None:
    traced = await store.enqueue(NewTask(kind="k", traceparent=TRACEPARENT), now=BASE)
    plain = await store.enqueue(NewTask(kind="k"), now=BASE)
    assert (
        (await get(store, traced.id)).traceparent,
        (await get(store, plain.id)).traceparent,
    ) == (
        TRACEPARENT,
        None,
    )
    claimed = await store.claim(worker="w", limit=2, now=at(1))
    assert {t.id: t.traceparent for t in claimed} == {
        traced.id: TRACEPARENT,
        plain.id: None,
    }
    await store.finish([Failed(id=traced.id, token=1, error=error(), retry_at=None)], now=at(2))
    retried = await store.retry(traced.id, now=at(3))
    assert retried.traceparent == TRACEPARENT
    listed = await store.list()
    assert {t.id: t.traceparent for t in listed} == {
        traced.id: TRACEPARENT,
        plain.id: None,
    }


async def test_enqueue_many_stores_all_in_order(store: Store) -> None:
    tasks = [NewTask(kind="k", payload={"i": i}) for i in range(5)]
    enqueued = await store.enqueue_many(tasks, now=BASE)
    assert [(await get(store, e.id)).payload["i"] for e in enqueued] == list(range(5))
    ids = [e.id for e in enqueued]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert all(e.created for e in enqueued)
    assert await store.enqueue_many([], now=BASE) == []


async def test_unique_key_returns_the_unfinished_task_until_it_finishes(store: Store) -> None:
    first = await add(store, unique_key="report:7", payload={"v": 1})
    again = await store.enqueue(
        NewTask(kind="email", unique_key="report:7", payload={"v": 2}), now=at(1)
    )
    assert not again.created
    assert again.id == first.id
    assert await get(store, first.id) == first  # the first task, its payload kept
    claimed = await claim_one(store, now=1)
    while_running = await store.enqueue(NewTask(kind="email", unique_key="report:7"), now=at(2))
    assert (while_running.created, while_running.id) == (False, first.id)
    assert (await get(store, first.id)).state is RUNNING
    await store.finish([Succeeded(id=first.id, token=claimed.token)], now=at(3))
    after = await store.enqueue(NewTask(kind="email", unique_key="report:7"), now=at(4))
    assert after.created
    assert after.id != first.id
    other = await store.enqueue(NewTask(kind="email", unique_key="report:8"), now=at(4))
    assert other.created


async def test_unique_key_dedupes_within_one_batch(store: Store) -> None:
    batch = [NewTask(kind="k", unique_key="x"), NewTask(kind="k", unique_key="x")]
    first, second = await store.enqueue_many(batch, now=BASE)
    assert (first.created, second.created) == (True, False)
    assert second.id == first.id
    assert len(await store.list()) == 1


# -- claim ----------------------------------------------------------------------------------


async def test_claim_order_is_priority_then_run_at_then_id(store: Store) -> None:
    low = await add(store, priority=0, run_at=at(-10))
    high_late = await add(store, priority=5, run_at=at(-1))
    high_early = await add(store, priority=5, run_at=at(-2))
    tie_a = await add(store, priority=1, run_at=at(-3))
    tie_b = await add(store, priority=1, run_at=at(-3))
    claimed = await store.claim(worker="w1", limit=10, now=at(0))
    assert [t.id for t in claimed] == [high_early.id, high_late.id, tie_a.id, tie_b.id, low.id]


async def test_claim_takes_only_due_tasks_up_to_the_limit(store: Store) -> None:
    due = [await add(store, run_at=at(-i)) for i in range(3)]
    future = await add(store, run_at=at(0.000001))
    assert await store.claim(worker="w1", limit=0, now=at(0)) == []
    first = await store.claim(worker="w1", limit=2, now=at(0))
    assert len(first) == 2
    rest = await store.claim(worker="w1", limit=10, now=at(0))
    assert {t.id for t in first + rest} == {t.id for t in due}
    assert await store.claim(worker="w1", limit=10, now=at(0)) == []
    [late] = await store.claim(worker="w1", limit=10, now=at(0.000001))
    assert late.id == future.id


async def test_claim_restricts_kinds(store: Store) -> None:
    email = await add(store, kind="email")
    sms = await add(store, kind="sms")
    await add(store, kind="fax")
    assert await store.claim(worker="w1", limit=10, now=at(0), kinds=[]) == []
    assert [t.id for t in await store.claim(worker="w1", limit=10, now=at(0), kinds=["sms"])] == [
        sms.id
    ]
    claimed = await store.claim(worker="w1", limit=10, now=at(0), kinds=["email", "nope"])
    assert [t.id for t in claimed] == [email.id]
    assert len(await store.claim(worker="w1", limit=10, now=at(0))) == 1


async def test_claim_makes_the_task_running_and_owned(store: Store) -> None:
    timed = await add(store, timeout=90.5)
    untimed = await add(store)
    claimed = {t.id: t for t in await store.claim(worker="w1", limit=2, now=at(10))}
    task = claimed[timed.id]
    assert (task.state, task.owner, task.attempt, task.token) == (RUNNING, "w1", 1, 1)
    assert task.deadline == at(100.5)
    assert task.updated_at == at(10)
    assert claimed[untimed.id].deadline is None
    assert await store.get(timed.id) == task


async def test_every_claim_bumps_the_token(store: Store) -> None:
    task = await add(store)
    first = await claim_one(store)
    await store.finish([Released(id=task.id, token=first.token, run_at=at(1))], now=at(1))
    second = await claim_one(store, "w2", now=1)
    assert second.token == first.token + 1
    assert (second.owner, second.attempt) == ("w2", 1)  # the release refunded attempt 1


# -- finish ---------------------------------------------------------------------------------


async def test_succeeded_stores_the_result(store: Store) -> None:
    await add(store)
    task = await claim_one(store)
    ok = await store.finish(
        [Succeeded(id=task.id, token=task.token, result={"sent": [1, "a"]})], now=at(7)
    )
    assert ok == [True]
    done = await get(store, task.id)
    assert (done.state, done.result, done.finished_at, done.updated_at) == (
        SUCCEEDED,
        {"sent": [1, "a"]},
        at(7),
        at(7),
    )
    assert (done.owner, done.deadline, done.attempt) == (None, None, 1)


async def test_failed_with_retry_at_goes_back_to_pending_with_the_attempt_spent(
    store: Store,
) -> None:
    await add(store, timeout=5)
    task = await claim_one(store)
    ok = await store.finish(
        [Failed(id=task.id, token=task.token, error=error(1, 1), retry_at=at(30))], now=at(1)
    )
    assert ok == [True]
    failed = await get(store, task.id)
    assert (failed.state, failed.run_at, failed.attempt, failed.errors) == (
        PENDING,
        at(30),
        1,
        (error(1, 1),),
    )
    assert (failed.owner, failed.deadline, failed.finished_at) == (None, None, None)
    assert await store.claim(worker="w1", limit=1, now=at(29)) == []
    second = await claim_one(store, now=30)
    assert second.attempt == 2
    await store.finish(
        [Failed(id=task.id, token=second.token, error=error(2, 31), retry_at=None)], now=at(31)
    )
    dead = await get(store, task.id)
    assert (dead.state, dead.finished_at, dead.attempt) == (DEAD, at(31), 2)
    assert dead.errors == (error(1, 1), error(2, 31))


async def test_failed_without_retry_at_is_dead(store: Store) -> None:
    await add(store)
    task = await claim_one(store)
    await store.finish(
        [Failed(id=task.id, token=task.token, error=error(), retry_at=None)], now=at(2)
    )
    dead = await get(store, task.id)
    assert (dead.state, dead.finished_at, dead.errors, dead.owner) == (
        DEAD,
        at(2),
        (error(),),
        None,
    )


async def test_released_goes_back_to_pending_with_the_attempt_refunded(store: Store) -> None:
    await add(store)
    task = await claim_one(store)
    assert await store.finish(
        [Released(id=task.id, token=task.token, run_at=at(9))], now=at(3)
    ) == [True]
    released = await get(store, task.id)
    assert (released.state, released.attempt, released.run_at, released.errors) == (
        PENDING,
        0,
        at(9),
        (),
    )
    assert (released.owner, released.deadline, released.updated_at) == (None, None, at(3))


async def test_cancelled_outcome_finishes_the_task(store: Store) -> None:
    await add(store)
    task = await claim_one(store)
    assert await store.finish([Cancelled(id=task.id, token=task.token)], now=at(4)) == [True]
    cancelled = await get(store, task.id)
    assert (cancelled.state, cancelled.finished_at, cancelled.owner) == (CANCELLED, at(4), None)


async def test_a_stale_token_changes_nothing(store: Store) -> None:
    await add(store)
    task = await claim_one(store)
    before = await get(store, task.id)
    stale = task.token - 1
    outcomes: list[Outcome] = [
        Succeeded(id=task.id, token=stale, result=1),
        Failed(id=task.id, token=stale, error=error(), retry_at=None),
        Failed(id=task.id, token=stale, error=error(), retry_at=at(5)),
        Released(id=task.id, token=stale, run_at=at(5)),
        Cancelled(id=task.id, token=stale),
        Succeeded(id=999_999, token=1),
    ]
    assert await store.finish(outcomes, now=at(5)) == [False] * 6
    assert await store.get(task.id) == before


async def test_a_batch_applies_each_outcome_once(store: Store) -> None:
    for _ in range(3):
        await add(store)
    a, b, c = await store.claim(worker="w1", limit=3, now=at(0))
    results = await store.finish(
        [
            Succeeded(id=a.id, token=a.token),
            Succeeded(id=a.id, token=a.token),  # already finished by the line above
            Failed(id=b.id, token=b.token + 1, error=error(), retry_at=None),
            Released(id=c.id, token=c.token, run_at=at(1)),
        ],
        now=at(1),
    )
    assert results == [True, False, False, True]
    assert [(await get(store, t.id)).state for t in (a, b, c)] == [SUCCEEDED, RUNNING, PENDING]
    assert await store.finish([], now=at(1)) == []


# -- cancel, heartbeat ----------------------------------------------------------------------


async def test_cancel_pending_is_immediate(store: Store) -> None:
    task = await add(store)
    cancelled = await store.cancel(task.id, now=at(2))
    assert cancelled is not None
    assert (cancelled.state, cancelled.finished_at, cancelled.updated_at) == (
        CANCELLED,
        at(2),
        at(2),
    )
    assert await store.get(task.id) == cancelled
    assert await store.claim(worker="w1", limit=1, now=at(3)) == []


async def test_cancel_running_is_requested_then_the_owner_cancels(store: Store) -> None:
    await add(store)
    other = await add(store)
    task = await claim_one(store)
    mate = await claim_one(store)
    assert mate.id == other.id
    assert await store.heartbeat(worker="w1", now=at(1), running=[(task.id, task.token)]) == set()
    requested = await store.cancel(task.id, now=at(2))
    assert requested is not None
    assert (requested.state, requested.cancel_requested, requested.updated_at) == (
        RUNNING,
        True,
        at(2),
    )
    running = [(task.id, task.token), (mate.id, mate.token)]
    assert await store.heartbeat(worker="w1", now=at(3), running=running) == {task.id}
    # Only the owner under the current token hears of it.
    assert await store.heartbeat(worker="w2", now=at(3), running=running) == set()
    assert (
        await store.heartbeat(worker="w1", now=at(3), running=[(task.id, task.token - 1)]) == set()
    )
    assert await store.finish([Cancelled(id=task.id, token=task.token)], now=at(4)) == [True]
    assert (await get(store, task.id)).state is CANCELLED


async def test_cancel_leaves_finished_tasks_and_knows_no_stranger(store: Store) -> None:
    await add(store)
    task = await claim_one(store)
    await store.finish([Succeeded(id=task.id, token=task.token)], now=at(1))
    done = await get(store, task.id)
    assert await store.cancel(task.id, now=at(2)) == done
    assert await store.cancel(999_999, now=at(2)) is None


@pytest.mark.parametrize("outcome", ["released", "failed"])
async def test_a_requested_cancel_wins_over_going_back_to_pending(
    store: Store, outcome: str
) -> None:
    await add(store)
    task = await claim_one(store)
    await store.cancel(task.id, now=at(1))
    back = (
        Released(id=task.id, token=task.token, run_at=at(2))
        if outcome == "released"
        else Failed(id=task.id, token=task.token, error=error(), retry_at=at(9))
    )
    assert await store.finish([back], now=at(2)) == [True]
    final = await get(store, task.id)
    assert (final.state, final.finished_at) == (CANCELLED, at(2))


# -- retry ----------------------------------------------------------------------------------


async def test_retry_gives_a_dead_task_a_fresh_allowance(store: Store) -> None:
    await add(store, max_attempts=1, run_at=at(-5))
    task = await claim_one(store)
    await store.finish(
        [Failed(id=task.id, token=task.token, error=error(), retry_at=None)], now=at(1)
    )
    retried = await store.retry(task.id, now=at(10))
    assert retried is not None
    assert (retried.state, retried.attempt, retried.rescues, retried.run_at) == (
        PENDING,
        0,
        0,
        at(10),
    )
    assert (retried.finished_at, retried.owner, retried.updated_at) == (None, None, at(10))
    assert retried.errors == (error(),)  # the history stays
    again = await claim_one(store, now=10)
    assert (again.id, again.attempt, again.token) == (task.id, 1, task.token + 1)


async def test_retry_revives_cancelled_and_leaves_the_others(store: Store) -> None:
    cancelled = await add(store)
    await store.cancel(cancelled.id, now=at(1))
    revived = await store.retry(cancelled.id, now=at(2))
    assert revived is not None
    assert (revived.state, revived.cancel_requested, revived.finished_at) == (PENDING, False, None)
    running = await claim_one(store, now=2)
    pending = await add(store, now=2)
    for task_id in (running.id, pending.id):
        before = await get(store, task_id)
        assert await store.retry(task_id, now=at(3)) == before
    assert await store.retry(999_999, now=at(3)) is None


async def test_retry_refuses_to_duplicate_an_unfinished_unique_key(store: Store) -> None:
    old = await add(store, unique_key="u")
    await store.cancel(old.id, now=at(1))
    new = await add(store, unique_key="u", now=2)
    with pytest.raises(TaskStateConflict, match=f"task {new.id}"):
        await store.retry(old.id, now=at(3))
    assert (await get(store, old.id)).state is CANCELLED


# -- rescue ---------------------------------------------------------------------------------


async def test_rescue_takes_back_the_tasks_of_a_dead_worker(store: Store) -> None:
    await add(store)
    await add(store)
    lost = await claim_one(store, "w1", now=0)
    kept = await claim_one(store, "w2", now=0)
    await store.heartbeat(worker="w2", now=at(20), running=[(kept.id, kept.token)])
    assert (await store.rescue(now=at(29), lease=30, max_rescues=3)).to_pending == ()
    report = await store.rescue(now=at(30), lease=30, max_rescues=3)
    assert (report.to_pending, report.to_dead, report.dead_workers) == ((lost.id,), (), ("w1",))
    rescued = await get(store, lost.id)
    assert (rescued.state, rescued.rescues, rescued.token, rescued.owner) == (
        PENDING,
        1,
        lost.token + 1,
        None,
    )
    assert (rescued.run_at, rescued.attempt, rescued.deadline) == (at(30), 1, None)
    [note] = rescued.errors
    assert (note.type, note.attempt, note.at) == ("Rescued", 1, at(30))
    assert "w1" in note.message
    # The presumed-dead owner's late result is fenced out.
    assert await store.finish([Succeeded(id=lost.id, token=lost.token)], now=at(31)) == [False]
    assert (await get(store, kept.id)).state is RUNNING
    again = await claim_one(store, "w2", now=31)
    assert (again.id, again.attempt, again.token) == (lost.id, 2, lost.token + 2)


async def test_rescue_takes_back_tasks_past_their_deadline(store: Store) -> None:
    await add(store, timeout=10)
    task = await claim_one(store, now=0)
    await store.heartbeat(worker="w1", now=at(10), running=[(task.id, task.token)])
    assert (await store.rescue(now=at(10), lease=30, max_rescues=3)).to_pending == ()
    report = await store.rescue(now=at(10.000001), lease=30, max_rescues=3)
    assert (report.to_pending, report.dead_workers) == ((task.id,), ())
    assert (await get(store, task.id)).token == task.token + 1


async def test_rescue_sends_a_poison_pill_to_dead(store: Store) -> None:
    task = await add(store, max_attempts=10)
    for round_ in range(3):
        await claim_one(store, f"w{round_}", now=round_ * 100)
        report = await store.rescue(now=at(round_ * 100 + 50), lease=30, max_rescues=2)
        expected = ((), (task.id,)) if round_ == 2 else ((task.id,), ())
        assert (report.to_pending, report.to_dead) == expected
    dead = await get(store, task.id)
    assert (dead.state, dead.rescues, dead.finished_at, len(dead.errors)) == (DEAD, 3, at(250), 3)


async def test_a_dead_worker_does_not_spend_the_last_attempt(store: Store) -> None:
    # The worker crashed; the task did not fail: it runs again (at least once).
    task = await add(store, max_attempts=1)
    await claim_one(store)
    report = await store.rescue(now=at(60), lease=30, max_rescues=5)
    assert report.to_pending == (task.id,)
    assert (await get(store, task.id)).state is PENDING


async def test_a_hung_last_attempt_sends_the_task_to_dead(store: Store) -> None:
    # Past its deadline on a live worker, the attempt failed: no attempts left.
    task = await add(store, max_attempts=1, timeout=10)
    await claim_one(store)
    await store.heartbeat(worker="w1", now=at(10.5), running=[(task.id, 1)])
    report = await store.rescue(now=at(10.5), lease=30, max_rescues=5)
    assert report.to_dead == (task.id,)
    assert (await get(store, task.id)).state is DEAD


async def test_rescue_takes_back_tasks_of_a_forgotten_worker(store: Store) -> None:
    task = await add(store)
    await claim_one(store, "w1")
    await store.forget_worker("w1")
    report = await store.rescue(now=at(1), lease=30, max_rescues=3)
    assert report.to_pending == (task.id,)
    assert report.dead_workers == ("w1",)


async def test_rescue_of_a_cancel_requested_task_cancels_it(store: Store) -> None:
    task = await add(store)
    await claim_one(store, "w1")
    await store.cancel(task.id, now=at(1))
    report = await store.rescue(now=at(60), lease=30, max_rescues=3)
    assert (report.to_pending, report.to_dead) == ((), ())
    assert (await get(store, task.id)).state is CANCELLED


async def test_rescue_with_no_lease_takes_back_everything_running(store: Store) -> None:
    await add(store)
    task = await claim_one(store, "w1", now=5)
    report = await store.rescue(now=at(5), lease=0, max_rescues=3)
    assert report.to_pending == (task.id,)


# -- operators ------------------------------------------------------------------------------


async def test_purge_deletes_only_tasks_finished_before_the_time(store: Store) -> None:
    for _ in range(3):
        await add(store)
    old, new, running = await store.claim(worker="w1", limit=3, now=at(0))
    await store.finish([Succeeded(id=old.id, token=old.token)], now=at(10))
    await store.finish([Succeeded(id=new.id, token=new.token)], now=at(20))
    pending = await add(store)
    cancelled = await add(store)
    await store.cancel(cancelled.id, now=at(5))
    assert await store.purge(finished_before=at(10)) == 1  # `cancelled`, at 5
    assert await store.purge(finished_before=at(20.000001)) == 2
    assert await store.purge(finished_before=at(1000)) == 0
    assert {t.id for t in await store.list()} == {running.id, pending.id}


async def test_purge_by_state_deletes_those_only_and_the_count_deletes_nothing(
    store: Store,
) -> None:
    done, dead, cancelled, pending = [await add(store) for _ in range(4)]
    a, b = await store.claim(worker="w1", limit=2, now=at(0))
    assert (a.id, b.id) == (done.id, dead.id)
    await store.finish([Succeeded(id=a.id, token=a.token)], now=at(1))
    await store.finish([Failed(id=b.id, token=b.token, error=error(), retry_at=None)], now=at(1))
    await store.cancel(cancelled.id, now=at(1))

    assert await store.count_purgeable(finished_before=at(2)) == 3
    assert await store.count_purgeable(finished_before=at(2), states={DEAD}) == 1
    assert await store.count_purgeable(finished_before=at(1)) == 0  # strictly before
    assert len(await store.list()) == 4, "counting deleted something"

    assert await store.purge(finished_before=at(2), states={DEAD}) == 1
    assert {t.id for t in await store.list()} == {done.id, cancelled.id, pending.id}
    assert await store.purge(finished_before=at(2), states={SUCCEEDED, CANCELLED}) == 2
    assert [t.id for t in await store.list()] == [pending.id]


@pytest.mark.parametrize("state", [PENDING, RUNNING])
async def test_purge_refuses_unfinished_states(store: Store, state: TaskState) -> None:
    task = await add(store)
    with pytest.raises(ValueError, match=f"finished tasks only, not {state.value}"):
        await store.purge(finished_before=at(10), states={state, DEAD})
    with pytest.raises(ValueError, match=f"finished tasks only, not {state.value}"):
        await store.count_purgeable(finished_before=at(10), states={state})
    assert [t.id for t in await store.list()] == [task.id]


async def test_counts_cover_every_state(store: Store) -> None:
    assert await store.counts() == dict.fromkeys(TaskState, 0)
    for _ in range(5):
        await add(store)
    a, b, _running = await store.claim(worker="w1", limit=3, now=at(0))
    await store.finish(
        [
            Succeeded(id=a.id, token=a.token),
            Failed(id=b.id, token=b.token, error=error(), retry_at=None),
        ],
        now=at(1),
    )
    await store.cancel((await add(store)).id, now=at(1))
    assert await store.counts() == {
        PENDING: 2,
        RUNNING: 1,
        SUCCEEDED: 1,
        DEAD: 1,
        CANCELLED: 1,
    }


async def test_list_filters_newest_first_and_pages(store: Store) -> None:
    ids = [(await add(store, kind="a" if i % 2 else "b")).id for i in range(7)]
    await store.cancel(ids[0], now=at(1))
    await store.cancel(ids[3], now=at(1))
    assert [t.id for t in await store.list()] == ids[::-1]
    assert [t.id for t in await store.list(limit=3)] == ids[:3:-1]
    assert [t.id for t in await store.list(limit=3, before_id=ids[4])] == ids[1:4][::-1]
    assert [t.id for t in await store.list(kind="a")] == [ids[5], ids[3], ids[1]]
    assert [t.id for t in await store.list(state=CANCELLED)] == [ids[3], ids[0]]
    assert [t.id for t in await store.list(state=CANCELLED, kind="b")] == [ids[0]]
    assert await store.list(state=DEAD) == []
    assert await store.list(before_id=ids[0]) == []


async def test_get_of_an_unknown_id_is_none(store: Store) -> None:
    assert await store.get(424242) is None


async def test_migration_status_is_current_after_open(store: Store) -> None:
    status = await store.migration_status()
    assert status.current == status.latest


# -- wake-ups -------------------------------------------------------------------------------


async def test_wait_for_work_times_out_without_work(store: Store) -> None:
    with anyio.fail_after(2):
        assert await store.wait_for_work(0.05) is False


async def test_wait_for_work_wakes_on_enqueue(store: Store) -> None:
    woken: list[bool] = []

    async def waiter() -> None:
        woken.append(await store.wait_for_work(10))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            await add(store)
    assert woken == [True, True]


async def test_wait_for_work_remembers_an_enqueue_made_before_it(store: Store) -> None:
    await add(store)
    with anyio.fail_after(5):
        assert await store.wait_for_work(10) is True


# -- schedules ------------------------------------------------------------------------------


async def test_a_tasks_schedule_and_tick_are_kept_through_claim_and_listing(
    store: Store,
) -> None:
    paris = timezone(timedelta(hours=2))
    tick = datetime(2026, 1, 1, 3, 0, 0, 123456, tzinfo=paris)
    scheduled = await store.enqueue(
        NewTask(kind="k", schedule="nightly", scheduled_for=tick), now=BASE
    )
    plain = await store.enqueue(NewTask(kind="k"), now=BASE)
    stored, other = await get(store, scheduled.id), await get(store, plain.id)
    assert (stored.schedule, stored.scheduled_for) == ("nightly", tick)
    assert stored.scheduled_for.utcoffset() == timedelta(0)  # type: ignore[union-attr]
    assert (other.schedule, other.scheduled_for) == (None, None)
    claimed = await store.claim(worker="w", limit=2, now=at(1))
    assert {t.id: (t.schedule, t.scheduled_for) for t in claimed} == {
        scheduled.id: ("nightly", tick),
        plain.id: (None, None),
    }
    listed = await store.list()
    assert {t.id: (t.schedule, t.scheduled_for) for t in listed} == {
        scheduled.id: ("nightly", tick),
        plain.id: (None, None),
    }


def tick_task(tick: float, name: str = "nightly") -> NewTask:
    return NewTask(kind="report", schedule=name, scheduled_for=at(tick))


async def test_a_first_advance_inserts_the_schedule_and_stores_its_tasks(store: Store) -> None:
    assert await store.schedule_states() == {}
    enqueued = await store.advance_schedule(
        "nightly", spec="every 60s", expected=None, to=at(60), tasks=[tick_task(60)], now=at(61)
    )
    assert enqueued is not None
    [first] = enqueued
    assert first.created
    stored = await get(store, first.id)
    assert (stored.schedule, stored.scheduled_for) == ("nightly", at(60))
    assert await store.schedule_states() == {
        "nightly": ScheduleState(
            name="nightly",
            spec="every 60s",
            last_tick=at(60),
            last_task=first.id,
            last_fired_at=at(61),
            last_state=PENDING,
        )
    }


async def test_an_advance_from_a_stale_tick_stores_nothing(store: Store) -> None:
    first = await store.advance_schedule(
        "nightly", spec="s1", expected=None, to=at(60), tasks=[tick_task(60)], now=at(61)
    )
    assert first is not None
    before = await store.schedule_states()
    # Another node read "never advanced" too, and comes second: nothing happens.
    again = await store.advance_schedule(
        "nightly", spec="s2", expected=None, to=at(60), tasks=[tick_task(60)], now=at(62)
    )
    stale = await store.advance_schedule(
        "nightly", spec="s2", expected=at(0), to=at(120), tasks=[tick_task(120)], now=at(62)
    )
    assert (again, stale) == (None, None)
    assert await store.schedule_states() == before
    assert [t.id for t in await store.list()] == [first[0].id]


async def test_an_advance_from_the_tick_stored_moves_it_on(store: Store) -> None:
    await store.advance_schedule(
        "nightly", spec="s1", expected=None, to=at(60), tasks=[tick_task(60)], now=at(61)
    )
    second = await store.advance_schedule(
        "nightly",
        spec="s2",
        expected=at(60),
        to=at(120),
        tasks=[tick_task(120), tick_task(120)],
        now=at(121),
    )
    assert second is not None
    assert [e.created for e in second] == [True, True]
    # The same expected a second time: the tick has moved on.
    assert (
        await store.advance_schedule(
            "nightly", spec="s2", expected=at(60), to=at(120), tasks=[tick_task(120)], now=at(122)
        )
        is None
    )
    state = (await store.schedule_states())["nightly"]
    assert (state.spec, state.last_tick, state.last_task, state.last_fired_at) == (
        "s2",
        at(120),
        second[-1].id,
        at(121),
    )
    assert len(await store.list()) == 3


async def test_a_skipped_tick_moves_the_tick_and_keeps_the_last_task(store: Store) -> None:
    [fired] = await store.advance_schedule(  # type: ignore[misc]
        "nightly", spec="s", expected=None, to=at(60), tasks=[tick_task(60)], now=at(61)
    )
    skipped = await store.advance_schedule(
        "nightly", spec="s", expected=at(60), to=at(120), tasks=[], now=at(121)
    )
    assert skipped == []
    state = (await store.schedule_states())["nightly"]
    assert (state.last_tick, state.last_task, state.last_fired_at) == (
        at(120),
        fired.id,
        at(61),
    )
    never = await store.advance_schedule(
        "idle", spec="s", expected=None, to=at(60), tasks=[], now=at(61)
    )
    assert never == []
    idle = (await store.schedule_states())["idle"]
    assert (idle.last_tick, idle.last_task, idle.last_fired_at, idle.last_state) == (
        at(60),
        None,
        None,
        None,
    )


async def test_a_schedules_last_state_follows_its_task(store: Store) -> None:
    [fired] = await store.advance_schedule(  # type: ignore[misc]
        "nightly", spec="s", expected=None, to=at(60), tasks=[tick_task(60)], now=at(60)
    )
    assert (await store.schedule_states())["nightly"].last_state is PENDING
    task = await claim_one(store, now=61)
    assert (await store.schedule_states())["nightly"].last_state is RUNNING
    await store.finish([Succeeded(id=task.id, token=task.token)], now=at(62))
    assert (await store.schedule_states())["nightly"].last_state is SUCCEEDED
    assert await store.purge(finished_before=at(63)) == 1
    state = (await store.schedule_states())["nightly"]
    assert (state.last_task, state.last_state) == (fired.id, None)


async def test_an_advance_respects_unique_keys(store: Store) -> None:
    held = await add(store, unique_key="report")
    [deduped] = await store.advance_schedule(  # type: ignore[misc]
        "nightly",
        spec="s",
        expected=None,
        to=at(60),
        tasks=[NewTask(kind="report", unique_key="report", schedule="nightly")],
        now=at(61),
    )
    assert (deduped.created, deduped.id) == (False, held.id)
    assert (await store.schedule_states())["nightly"].last_task == held.id
    assert len(await store.list()) == 1


async def test_a_refused_task_leaves_the_schedule_and_the_tasks_unchanged(store: Store) -> None:
    await store.advance_schedule(
        "nightly", spec="s1", expected=None, to=at(60), tasks=[tick_task(60)], now=at(61)
    )
    before = (await store.schedule_states(), await store.list())
    with pytest.raises(TaskRejected, match="max_attempts"):
        await store.advance_schedule(
            "nightly",
            spec="s2",
            expected=at(60),
            to=at(120),
            tasks=[tick_task(120), NewTask(kind="report", max_attempts=0)],
            now=at(121),
        )
    with pytest.raises(TaskRejected, match="kind"):
        await store.advance_schedule(
            "fresh", spec="s", expected=None, to=at(60), tasks=[NewTask(kind="")], now=at(121)
        )
    assert (await store.schedule_states(), await store.list()) == before


@pytest.mark.parametrize("field", ["expected", "to", "now"])
async def test_an_advance_refuses_naive_times(store: Store, field: str) -> None:
    times: dict[str, Any] = {"expected": at(0), "to": at(60), "now": at(61)}
    times[field] = datetime(2026, 1, 1)  # naive on purpose
    with pytest.raises(ValueError, match=field):
        await store.advance_schedule("nightly", spec="s", tasks=[], **times)
    assert await store.schedule_states() == {}


async def test_forget_schedules_deletes_those_not_kept(store: Store) -> None:
    for name in ("a", "b", "c"):
        await store.advance_schedule(
            name, spec="s", expected=None, to=at(60), tasks=[tick_task(60, name)], now=at(60)
        )
    assert await store.forget_schedules({"b", "elsewhere"}) == 2
    assert sorted(await store.schedule_states()) == ["b"]
    assert len(await store.list()) == 3, "their tasks stay"
    assert await store.forget_schedules(["b"]) == 0
    assert await store.forget_schedules([]) == 1
    assert await store.schedule_states() == {}
    # A forgotten schedule starts again from nothing.
    assert (
        await store.advance_schedule(
            "a", spec="s", expected=None, to=at(120), tasks=[], now=at(120)
        )
        == []
    )


async def test_wait_for_work_wakes_on_a_schedules_tasks(store: Store) -> None:
    await store.wait_for_work(0)
    await store.advance_schedule(
        "nightly", spec="s", expected=None, to=at(60), tasks=[tick_task(60)], now=at(60)
    )
    with anyio.fail_after(5):
        assert await store.wait_for_work(10) is True


# -- the kinds catalogue --------------------------------------------------------------------

SEND = KindSpec(
    name="mail.send",
    plugin="mail",
    description="Send one e-mail",
    services=("smtp", "dkim"),
    payload_schema={
        "type": "object",
        "properties": {"to": {"type": "string", "title": "To"}, "n": {"type": "integer"}},
        "required": ["to"],
        "additionalProperties": False,
    },
)
NOOP = KindSpec(name="gladd.noop", plugin="gladd")


def row(spec: KindSpec, node: str, when: float) -> PublishedKind:
    return PublishedKind(
        name=spec.name,
        plugin=spec.plugin,
        description=spec.description,
        payload_schema=spec.payload_schema,
        services=spec.services,
        node=node,
        published_at=at(when),
    )


async def test_a_store_no_daemon_published_to_has_an_empty_catalogue(store: Store) -> None:
    assert await store.kinds_catalogue() == []


async def test_published_kinds_come_back_with_their_schema_node_and_time(store: Store) -> None:
    await store.publish_kinds("n1", [SEND, NOOP], now=at(3))

    assert await store.kinds_catalogue() == [row(NOOP, "n1", 3), row(SEND, "n1", 3)]


async def test_a_publication_replaces_the_nodes_kinds_and_keeps_the_others(store: Store) -> None:
    await store.publish_kinds("n1", [SEND, NOOP], now=at(1))
    await store.publish_kinds("n2", [NOOP], now=at(2))

    # n1's plugin was removed: its kind leaves n1's publication, n2's rows stay as they were.
    await store.publish_kinds("n1", [NOOP], now=at(5))

    assert await store.kinds_catalogue() == [row(NOOP, "n1", 5), row(NOOP, "n2", 2)]
    await store.publish_kinds("n1", [], now=at(6))
    assert await store.kinds_catalogue() == [row(NOOP, "n2", 2)]


async def test_a_kind_published_twice_by_one_node_is_refused(store: Store) -> None:
    await store.publish_kinds("n1", [NOOP], now=at(1))

    with pytest.raises(ValueError, match="twice"):
        await store.publish_kinds("n1", [SEND, SEND], now=at(2))

    assert await store.kinds_catalogue() == [row(NOOP, "n1", 1)]


# -- concurrency ----------------------------------------------------------------------------


async def test_concurrent_claims_never_hand_out_a_task_twice(store: Store) -> None:
    tasks = [NewTask(kind="k", payload={"i": i}) for i in range(500)]
    await store.enqueue_many(tasks, now=BASE)
    seen: list[int] = []

    async def claimer(worker: str) -> None:
        while claimed := await store.claim(worker=worker, limit=7, now=at(1)):
            seen.extend(t.id for t in claimed)
            await anyio.sleep(0)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(claimer, f"w{n}")
    assert len(seen) == 500
    assert len(set(seen)) == 500


# -- lifecycle ------------------------------------------------------------------------------


async def test_an_unopened_store_says_so(backend: tuple[str, str]) -> None:
    unopened = make_store(backend)
    with pytest.raises(StoreError, match="not open"):
        await unopened.enqueue(NewTask(kind="k"), now=BASE)
