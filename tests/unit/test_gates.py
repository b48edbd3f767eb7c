"""The flow-control planner (gladd/store/gates.py): exact, no event loop, time passed in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from gladd.store.gates import (
    NO_PARTITION,
    Bucket,
    Candidate,
    ClaimPlan,
    Gate,
    GateUsage,
    count_running,
    part_text,
    plan_claim,
    refill,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def cand(id_: int, kind: str = "sync", **parts: str) -> Candidate:
    return Candidate(id=id_, kind=kind, parts=parts)


def plan(
    gates: Sequence[Gate],
    candidates: Sequence[Candidate],
    *,
    running: dict[tuple[str, str], int] | None = None,
    buckets: dict[tuple[str, str], Bucket] | None = None,
    limit: int = 100,
    now: float = 0,
) -> ClaimPlan:
    return plan_claim(
        gates, candidates, running=running or {}, buckets=buckets or {}, limit=limit, now=at(now)
    )


# -- count_running and refill ---------------------------------------------------------------


def test_running_tasks_count_per_gate_and_partition() -> None:
    gates = [
        Gate(name="kind:sync", kinds=("sync",), concurrency=2, partition="tenant"),
        Gate(name="limit:crm", kinds=("push", "sync"), concurrency=5),
    ]
    running = [
        cand(1, tenant="a"),
        cand(2, tenant="a"),
        cand(3, tenant="b"),
        cand(4),  # no tenant: the shared partition
        cand(5, "push", tenant="a"),
        cand(6, "other", tenant="a"),  # no gate covers it
    ]
    assert count_running(gates, running) == {
        ("kind:sync", "a"): 2,
        ("kind:sync", "b"): 1,
        ("kind:sync", NO_PARTITION): 1,
        ("limit:crm", NO_PARTITION): 5,
    }


def test_a_bucket_never_stored_is_full_and_a_stored_one_refills_up_to_burst() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=4.0, burst=3)
    assert refill(gate, None, at(0)) == 3.0
    assert refill(gate, Bucket(tokens=0.5, at=at(0)), at(0.25)) == 1.5
    assert refill(gate, Bucket(tokens=0.5, at=at(0)), at(10)) == 3.0
    # A clock behind the bucket's (another node's ahead) refills nothing, takes nothing.
    assert refill(gate, Bucket(tokens=0.5, at=at(1)), at(0)) == 0.5


def test_a_partition_value_is_the_text_postgresql_gives() -> None:
    assert [part_text(v) for v in (None, "eu", 7, 1.5, True, False)] == [
        NO_PARTITION,
        "eu",
        "7",
        "1.5",
        "true",
        "false",
    ]


# -- concurrency ----------------------------------------------------------------------------


def test_concurrency_counts_running_and_taken_per_partition() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=2, partition="tenant")
    candidates = [
        cand(1, tenant="a"),
        cand(2, tenant="a"),  # a: one running already, 1 taken → full
        cand(3, tenant="b"),
        cand(4, tenant="b"),
        cand(5, tenant="b"),  # b full after 3 and 4
        cand(6),  # the shared partition, empty
    ]
    result = plan([gate], candidates, running={("kind:sync", "a"): 1})
    assert result.take == (1, 3, 4, 6)
    assert result.held == 2
    assert result.usage == {"kind:sync": GateUsage(running=5, busiest=2, tokens=None, held=2)}
    assert result.next_at is None  # only a finishing task makes room
    assert result.buckets == {}


def test_a_gate_already_over_capacity_starts_nothing() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=2)
    result = plan([gate], [cand(1), cand(2)], running={("kind:sync", NO_PARTITION): 3})
    assert (result.take, result.held) == ((), 2)
    assert result.usage["kind:sync"].running == 3


def test_a_kind_under_two_gates_needs_room_in_both() -> None:
    own = Gate(name="kind:sync", kinds=("sync",), concurrency=3)
    shared = Gate(name="limit:crm", kinds=("push", "sync"), concurrency=2)
    running = {("limit:crm", NO_PARTITION): 1}  # a push task
    result = plan([own, shared], [cand(1), cand(2), cand(3, "push")], running=running)
    assert result.take == (1,)  # then limit:crm is full, for sync and push alike
    assert result.held == 2
    assert result.usage == {
        "kind:sync": GateUsage(running=1, busiest=1, tokens=None, held=0),
        "limit:crm": GateUsage(running=2, busiest=2, tokens=None, held=2),
    }


def test_a_candidate_held_by_two_gates_counts_for_both() -> None:
    own = Gate(name="kind:sync", kinds=("sync",), concurrency=1)
    shared = Gate(name="limit:crm", kinds=("sync",), concurrency=1)
    running = {("kind:sync", NO_PARTITION): 1, ("limit:crm", NO_PARTITION): 1}
    result = plan([own, shared], [cand(1)], running=running)
    assert result.held == 1
    assert (result.usage["kind:sync"].held, result.usage["limit:crm"].held) == (1, 1)


def test_a_held_candidate_blocks_no_other_and_spends_nothing() -> None:
    rate = Gate(name="limit:api", kinds=("a", "b"), rate=1.0, burst=1)
    slots = Gate(name="kind:a", kinds=("a",), concurrency=1)
    running = {("kind:a", NO_PARTITION): 1}
    # a is held by its full slot gate: the token it would have needed goes to b.
    result = plan([rate, slots], [cand(1, "a"), cand(2, "b")], running=running)
    assert result.take == (2,)
    assert result.held == 1
    assert result.buckets == {("limit:api", NO_PARTITION): Bucket(tokens=0.0, at=at(0))}
    assert result.usage["limit:api"] == GateUsage(running=1, busiest=1, tokens=0.0, held=0)
    assert result.usage["kind:a"] == GateUsage(running=1, busiest=1, tokens=None, held=1)
    assert result.next_at is None  # held by a full gate: waiting alone gives no room


def test_a_kind_no_gate_covers_is_taken_freely() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=0)
    result = plan([gate], [cand(1), cand(2, "free"), cand(3, "free")])
    assert (result.take, result.held) == ((2, 3), 1)


def test_the_limit_stops_the_walk() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), concurrency=10, rate=100.0, burst=10)
    result = plan([gate], [cand(i) for i in range(1, 8)], limit=3)
    assert result.take == (1, 2, 3)
    assert result.held == 0  # the rest were not looked at
    assert result.buckets == {("kind:sync", NO_PARTITION): Bucket(tokens=7.0, at=at(0))}
    assert plan([gate], [cand(1)], limit=0).take == ()


# -- rate -----------------------------------------------------------------------------------


def test_a_rate_gives_the_burst_then_one_start_per_interval() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=4.0, burst=2)
    candidates = [cand(i) for i in range(1, 6)]
    first = plan([gate], candidates)
    assert first.take == (1, 2)
    assert first.held == 3
    assert first.next_at == at(0.25)
    buckets = first.buckets
    assert buckets == {("kind:sync", NO_PARTITION): Bucket(tokens=0.0, at=at(0))}
    early = plan([gate], candidates[2:], buckets=buckets, now=0.2)
    assert early.take == ()
    assert early.next_at == at(0.25)  # 0.8 tokens at 0.2 s: 0.05 s to go
    assert early.buckets == {}  # nothing spent: the stored bucket stays as it was
    on_time = plan([gate], candidates[2:], buckets=buckets, now=0.25)
    assert on_time.take == (3,)
    assert on_time.next_at == at(0.5)
    assert on_time.usage["kind:sync"].tokens == 0.0


def test_next_at_is_exact_to_the_microsecond() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=3.0, burst=1)
    buckets = {("kind:sync", NO_PARTITION): Bucket(tokens=0.0, at=at(0))}
    held = plan([gate], [cand(1)], buckets=buckets)
    assert held.next_at == at(0) + timedelta(microseconds=333_334)  # rounded up, not down
    assert held.next_at is not None
    later = (held.next_at - BASE).total_seconds()
    assert plan([gate], [cand(1)], buckets=buckets, now=later).take == (1,)


def test_next_at_waits_for_every_gate_a_candidate_lacks_a_token_in() -> None:
    fast = Gate(name="kind:a", kinds=("a",), rate=10.0, burst=1)
    slow = Gate(name="limit:api", kinds=("a", "b"), rate=2.0, burst=1)
    dry = Bucket(tokens=0.0, at=at(0))
    buckets = {("kind:a", NO_PARTITION): dry, ("limit:api", NO_PARTITION): dry}
    result = plan([fast, slow], [cand(1, "a")], buckets=buckets)
    assert result.next_at == at(0.5)
    # Of several held candidates, the soonest.
    only_b = Gate(name="kind:b", kinds=("b",), rate=2.0, burst=1)
    buckets = {("kind:a", NO_PARTITION): dry, ("kind:b", NO_PARTITION): dry}
    result = plan([fast, only_b], [cand(1, "b"), cand(2, "a")], buckets=buckets)
    assert (result.take, result.held) == ((), 2)
    assert result.next_at == at(0.1)


def test_partitions_have_buckets_of_their_own() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=1.0, burst=1, partition="tenant")
    result = plan([gate], [cand(1, tenant="a"), cand(2, tenant="a"), cand(3, tenant="b")])
    assert result.take == (1, 3)
    assert result.buckets == {
        ("kind:sync", "a"): Bucket(tokens=0.0, at=at(0)),
        ("kind:sync", "b"): Bucket(tokens=0.0, at=at(0)),
    }
    assert result.usage["kind:sync"].tokens is None  # per partition: no single figure
    assert result.next_at == at(1)


def test_a_bucket_stored_by_a_clock_ahead_keeps_its_time() -> None:
    gate = Gate(name="kind:sync", kinds=("sync",), rate=1.0, burst=5)
    buckets = {("kind:sync", NO_PARTITION): Bucket(tokens=3.0, at=at(10))}
    result = plan([gate], [cand(1)], buckets=buckets, now=9)
    assert result.buckets == {("kind:sync", NO_PARTITION): Bucket(tokens=2.0, at=at(10))}


def test_over_any_second_a_rate_starts_at_most_rate_plus_burst() -> None:
    """50/s with a burst of 10, claimed every millisecond for 5 s with a deep backlog:
    within any second (both ends included) at most 60 start, and 50/s after the burst."""
    gate = Gate(name="kind:sync", kinds=("sync",), rate=50.0, burst=10)
    buckets: dict[tuple[str, str], Bucket] = {}
    starts: list[int] = []  # milliseconds
    next_id = 1
    for ms in range(5000):
        backlog = [cand(i) for i in range(next_id, next_id + 100)]
        result = plan([gate], backlog, buckets=buckets, limit=100, now=ms / 1000)
        buckets = {**buckets, **result.buckets}
        starts.extend([ms] * len(result.take))
        next_id += len(result.take)
    assert starts[:10] == [0] * 10  # the burst at once
    assert starts[10:13] == [20, 40, 60]  # then one per 1/rate seconds
    window = [sum(1 for s in starts if t <= s <= t + 1000) for t in range(0, 4001, 10)]
    assert max(window) == 60
    assert len(starts) == 10 + 50 * 5 - 1  # the 250th refill lands at 5.000 s, not before
