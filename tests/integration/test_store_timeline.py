"""The Store contract for task timelines and ``started_at``, on every store (issue 14).

Each state change appends its entries in the statement that makes it; times are passed in,
so every entry's ``at`` is asserted exactly. The bound (first 10, last 40, one ``dropped``
entry between) is the same on every store: PostgreSQL's SQL function and the Python rule
the others call are held to the same answers here.
"""

from __future__ import annotations

from typing import Any

import pytest

from gladd.store import (
    Cancelled,
    Failed,
    NewTask,
    Released,
    Store,
    Succeeded,
    Task,
    TaskState,
)
from gladd.store.timeline import HEAD, TAIL
from tests.integration.test_store_contract import at, error

pytestmark = pytest.mark.anyio


async def _task(store: Store, task_id: int) -> Task:
    task = await store.get(task_id)
    assert task is not None
    return task


def _events(task: Task) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, dict(e.fields)) for e in task.timeline]


async def _claimed(store: Store, **new: Any) -> Task:
    await store.enqueue(NewTask(kind="k", **new), now=at(0))
    (task,) = await store.claim(worker="node-a", limit=1, now=at(10))
    return task


async def test_an_enqueue_records_who_created_it(store: Store) -> None:
    python = await store.enqueue(NewTask(kind="k"), now=at(0))
    http, cli, schedule = await store.enqueue_many(
        [NewTask(kind="k", source=s) for s in ("http", "cli", "schedule")], now=at(1)
    )
    first = await _task(store, python.id)
    assert [(e.at, e.event, dict(e.fields)) for e in first.timeline] == [
        (at(0), "created", {"source": "python"})
    ]
    for enqueued, source in ((http, "http"), (cli, "cli"), (schedule, "schedule")):
        assert _events(await _task(store, enqueued.id)) == [("created", {"source": source})]


async def test_a_claim_records_the_node_the_token_and_the_attempt(store: Store) -> None:
    task = await _claimed(store)
    got = await _task(store, task.id)
    assert got.started_at == at(10)
    assert [(e.at, e.event, dict(e.fields)) for e in got.timeline[1:]] == [
        (at(10), "claimed", {"node": "node-a", "token": 1}),
        (at(10), "attempt started", {"attempt": 1}),
    ]


async def test_started_at_is_the_first_attempts_start(store: Store) -> None:
    task = await _claimed(store, max_attempts=3)
    assert task.started_at == at(10)
    failed = Failed(id=task.id, token=task.token, error=error(1, 11), retry_at=at(12))
    await store.finish([failed], now=at(11))
    (again,) = await store.claim(worker="node-b", limit=1, now=at(20))
    assert again.started_at == at(10)
    listed = await store.list()
    assert (listed[0].started_at, listed[0].created_at) == (at(10), at(0))
    fresh = await store.enqueue(NewTask(kind="k", run_at=at(500)), now=at(30))
    assert (await _task(store, fresh.id)).started_at is None


async def test_each_outcome_records_the_attempts_end(store: Store) -> None:
    ok = await _claimed(store)
    await store.finish([Succeeded(id=ok.id, token=ok.token, duration=1.25)], now=at(12))
    ended = (await _task(store, ok.id)).timeline[-1]
    assert (ended.at, ended.event, dict(ended.fields)) == (
        at(12),
        "attempt ended",
        {"attempt": 1, "outcome": "succeeded", "duration": 1.25},
    )

    retried = await _claimed(store, max_attempts=2)
    failed = Failed(id=retried.id, token=retried.token, error=error(1, 12), retry_at=at(15))
    await store.finish([failed], now=at(12))
    assert _events(await _task(store, retried.id))[-1] == (
        "attempt ended",
        {
            "attempt": 1,
            "outcome": "failed",
            "error": "ValueError: boom",
            "until": at(15).isoformat(),
        },
    )

    dead = await _claimed(store)
    gone = Failed(id=dead.id, token=dead.token, error=error(1, 12), retry_at=None)
    await store.finish([gone], now=at(12))
    assert _events(await _task(store, dead.id))[-1] == (
        "attempt ended",
        {"attempt": 1, "outcome": "dead", "error": "ValueError: boom"},
    )


async def test_a_release_records_why_it_was_postponed_and_until_when(store: Store) -> None:
    task = await _claimed(store)
    held = Released(
        id=task.id, token=task.token, run_at=at(40), reason="breaker", why="breaker b is open"
    )
    await store.finish([held], now=at(11))
    got = await _task(store, task.id)
    assert (got.state, got.attempt) == (TaskState.PENDING, 0)
    assert _events(got)[-2:] == [
        ("attempt ended", {"attempt": 1, "outcome": "released"}),
        (
            "postponed",
            {"reason": "breaker", "why": "breaker b is open", "until": at(40).isoformat()},
        ),
    ]


async def test_a_snooze_is_recorded_as_snoozed(store: Store) -> None:
    task = await _claimed(store)
    snooze = Released(id=task.id, token=task.token, run_at=at(70), reason="snooze")
    await store.finish([snooze], now=at(11))
    assert _events(await _task(store, task.id))[-1] == ("snoozed", {"until": at(70).isoformat()})


async def test_cancels_record_who_asked_and_how_it_ended(store: Store) -> None:
    pending = await store.enqueue(NewTask(kind="k", run_at=at(100)), now=at(0))
    await store.cancel(pending.id, now=at(5), by="127.0.0.1")
    last = (await _task(store, pending.id)).timeline[-1]
    assert (last.at, last.event, dict(last.fields)) == (at(5), "cancelled", {"by": "127.0.0.1"})

    running = await _claimed(store)
    await store.cancel(running.id, now=at(11), by="cli")
    await store.cancel(running.id, now=at(12), by="cli")  # asked already: nothing new
    await store.finish([Cancelled(id=running.id, token=running.token)], now=at(13))
    assert _events(await _task(store, running.id))[-3:] == [
        ("cancel requested", {"by": "cli"}),
        ("attempt ended", {"attempt": 1, "outcome": "cancelled"}),
        ("cancelled", {}),
    ]


async def test_a_requested_cancel_ends_a_failing_task_cancelled(store: Store) -> None:
    task = await _claimed(store, max_attempts=3)
    await store.cancel(task.id, now=at(11))
    failed = Failed(id=task.id, token=task.token, error=error(1, 12), retry_at=at(20))
    await store.finish([failed], now=at(12))
    got = await _task(store, task.id)
    assert got.state is TaskState.CANCELLED
    assert [e for e, _ in _events(got)[-3:]] == ["cancel requested", "attempt ended", "cancelled"]


async def test_an_operators_retry_records_who(store: Store) -> None:
    task = await _claimed(store)
    await store.finish(
        [Failed(id=task.id, token=task.token, error=error(), retry_at=None)], now=at(11)
    )
    await store.retry(task.id, now=at(20), by="10.0.0.7")
    last = (await _task(store, task.id)).timeline[-1]
    assert (last.at, last.event, dict(last.fields)) == (at(20), "retried", {"by": "10.0.0.7"})


async def test_a_rescue_records_whose_task_it_was_and_why(store: Store) -> None:
    lost = await _claimed(store)
    await store.enqueue(NewTask(kind="k", timeout=5), now=at(0))
    (hung,) = await store.claim(worker="node-b", limit=1, now=at(10))
    await store.heartbeat(worker="node-b", now=at(100), running=[(hung.id, hung.token)])
    await store.rescue(now=at(100), lease=30, max_rescues=3)
    last = (await _task(store, lost.id)).timeline[-1]
    assert (last.at, last.event, dict(last.fields)) == (
        at(100),
        "rescued",
        {"node": "node-a", "why": "owner dead", "state": "pending"},
    )
    assert _events(await _task(store, hung.id))[-1] == (
        "rescued",
        {"node": "node-b", "why": "deadline passed", "state": "pending"},
    )


async def test_a_late_result_under_an_old_token_is_recorded_as_fenced(store: Store) -> None:
    task = await _claimed(store)
    await store.rescue(now=at(100), lease=30, max_rescues=3)
    late = Succeeded(id=task.id, token=task.token, node="node-a")
    assert await store.finish([late], now=at(101)) == [False]
    got = await _task(store, task.id)
    assert got.state is TaskState.PENDING
    last = got.timeline[-1]
    assert (last.at, last.event, dict(last.fields)) == (
        at(101),
        "fenced",
        {"node": "node-a", "token": 1, "outcome": "succeeded"},
    )


async def test_the_timeline_keeps_its_head_and_tail_and_counts_what_it_dropped(
    store: Store,
) -> None:
    await store.enqueue(NewTask(kind="k"), now=at(0))
    rounds = 60  # each claim and release appends four entries
    for n in range(rounds):
        (task,) = await store.claim(worker="node-a", limit=1, now=at(n + 1))
        held = Released(id=task.id, token=task.token, run_at=at(n + 1), reason="stop")
        await store.finish([held], now=at(n + 1))
    got = await _task(store, task.id)
    total = 1 + 4 * rounds
    assert len(got.timeline) == HEAD + 1 + TAIL
    head, marker, tail = got.timeline[:HEAD], got.timeline[HEAD], got.timeline[HEAD + 1 :]
    assert [e.event for e in head[:3]] == ["created", "claimed", "attempt started"]
    assert marker.event == "dropped"
    assert marker.fields == {"count": total - HEAD - TAIL}
    assert marker.at == at(rounds - TAIL // 4)  # the last one dropped: round 50's
    assert tail[0].at == at(rounds - TAIL // 4 + 1)
    assert (tail[-1].event, tail[-1].at) == ("postponed", at(rounds))
    assert tail[-1].fields["until"] == at(rounds).isoformat()


async def test_a_purge_takes_the_timeline_with_the_task(store: Store) -> None:
    task = await _claimed(store)
    await store.finish([Succeeded(id=task.id, token=task.token)], now=at(11))
    assert await store.purge(finished_before=at(12)) == 1
    assert await store.get(task.id) is None
    again = await store.enqueue(NewTask(kind="k"), now=at(20))
    assert _events(await _task(store, again.id)) == [("created", {"source": "python"})]
