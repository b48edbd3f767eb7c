"""Flow control as the producer reads the policies: gates, pause targets, holds, reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gladd.errors import UnknownPauseTarget
from gladd.executor.flow import (
    describe_gate,
    gates_of,
    holds,
    next_expiry,
    normal_target,
    partition_of,
    split_kinds,
    target_kinds,
    wait_reasons,
)
from gladd.executor.kinds import KindRegistry, RegisteredKind
from gladd.policies import Policies
from gladd.store.gates import Gate, LimitUsage, Pause

NOW = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)


async def _handler(ctx: object, payload: object) -> None:
    return None


KINDS = KindRegistry(
    [
        RegisteredKind(name="crm.sync", handler=_handler, plugin="crm", services=("crm",)),
        RegisteredKind(name="crm.push", handler=_handler, plugin="crm", services=("crm",)),
        RegisteredKind(name="mail.send", handler=_handler, plugin="mail"),
        RegisteredKind(name="report", handler=_handler),
    ]
)

POLICIES = Policies.model_validate(
    {
        "services": {"crm": {}, "smtp": {}},
        "tasks": {
            "crm.sync": {"concurrency": 5, "partition": "account_id", "limits": ["crm"]},
            "crm.push": {"limits": ["crm"]},
            "mail.send": {"rate": "50/s", "burst": 10, "service": "smtp"},
        },
        "limits": {"crm": {"concurrency": 8, "rate": "100/s"}, "idle": {"concurrency": 2}},
    }
)


def pause(target: str, *, until: datetime | None = None, by: str = "cli:ops@host") -> Pause:
    return Pause(target=target, reason="incident 42", until=until, by=by, created_at=NOW)


def test_the_policies_compile_to_one_gate_per_limited_kind_and_per_used_limit() -> None:
    assert gates_of(POLICIES) == (
        Gate(name="kind:crm.sync", kinds=("crm.sync",), concurrency=5, partition="account_id"),
        Gate(name="kind:mail.send", kinds=("mail.send",), rate=50.0, burst=10),
        Gate(name="limit:crm", kinds=("crm.push", "crm.sync"), concurrency=8, rate=100.0),
    )  # limit:idle is listed by no kind: nothing to gate


def test_a_claim_splits_kinds_into_free_and_gated_and_leaves_held_ones_out() -> None:
    split = split_kinds(KINDS.names(), gates_of(POLICIES), held={"crm.push"})
    assert split.free == ("report",)
    assert split.gated == ("crm.sync", "mail.send")
    assert [g.name for g in split.gates] == ["kind:crm.sync", "kind:mail.send", "limit:crm"]
    assert split_kinds(["report"], gates_of(POLICIES), held=()).gates == ()


def test_each_target_holds_the_kinds_it_names() -> None:
    assert target_kinds("kind:report", POLICIES, KINDS) == {"report"}
    assert target_kinds("limit:crm", POLICIES, KINDS) == {"crm.sync", "crm.push"}
    # A service holds the kinds bound to it and those of plugins declaring it.
    assert target_kinds("service:smtp", POLICIES, KINDS) == {"mail.send"}
    assert target_kinds("cooldown:crm", POLICIES, KINDS) == {"crm.sync", "crm.push"}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("report", "kind:report"),
        ("kind:crm.sync", "kind:crm.sync"),
        ("service:crm", "service:crm"),
        ("limit:idle", "limit:idle"),
        ("cooldown:smtp", "cooldown:smtp"),
    ],
)
def test_a_target_is_stored_in_one_spelling(given: str, stored: str) -> None:
    assert normal_target(given, POLICIES, KINDS) == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("nope", "no task kind 'nope' to pause or resume (known: crm.push, crm.sync, "),
        ("service:ftp", "no service 'ftp' to pause or resume (known: crm, smtp)"),
        ("limit:x", "no limit 'x' to pause or resume (known: crm, idle)"),
        ("cooldown:x", "no service 'x' to pause or resume (known: crm, smtp)"),
        ("  ", "a pause names a kind, or service:NAME"),
    ],
)
def test_an_unknown_target_is_refused_saying_what_is_known(given: str, message: str) -> None:
    with pytest.raises(UnknownPauseTarget) as caught:
        normal_target(given, POLICIES, KINDS)
    assert str(caught.value).startswith(message)


def test_holds_come_from_the_policies_first_then_active_stored_pauses() -> None:
    paused = POLICIES.model_copy(
        update={
            "tasks": {
                **POLICIES.tasks,
                "report": POLICIES.tasks["crm.push"].model_copy(
                    update={"paused": True, "limits": ()}
                ),
            }
        }
    )
    held = holds(
        paused,
        [
            pause("kind:report"),  # also paused by the policies: the policies' reason shows
            pause("service:crm", until=NOW + timedelta(minutes=10)),
            pause("kind:mail.send", until=NOW - timedelta(seconds=1)),  # expired
        ],
        KINDS,
        NOW,
    )
    assert sorted(held) == ["crm.push", "crm.sync", "report"]
    assert held["report"].source == "policies"
    assert held["crm.sync"].describe() == (
        "paused (service:crm, by cli:ops@host) until 2027-01-05T12:10:00+00:00: incident 42"
    )


def test_the_next_expiry_is_the_soonest_timed_active_pause() -> None:
    soon, later = NOW + timedelta(seconds=5), NOW + timedelta(hours=1)
    pauses = [pause("a", until=later), pause("b"), pause("c", until=soon), pause("d", until=NOW)]
    assert next_expiry(pauses, NOW) == soon
    assert next_expiry([pause("b")], NOW) is None


def test_a_pending_task_says_which_limit_holds_it_and_for_which_partition() -> None:
    usage = LimitUsage(
        running={("kind:crm.sync", "7"): 5, ("limit:crm", ""): 3},
        tokens={("limit:crm", ""): 0.25},
    )
    reasons = wait_reasons(
        kind="crm.sync",
        payload={"account_id": 7},
        run_at=NOW,
        policies=POLICIES,
        held={},
        usage=usage,
        now=NOW,
    )
    assert reasons == [
        "limit kind:crm.sync is full for account_id = '7': 5 of 5 running",
        "limit limit:crm is out of start tokens (rate 100/s): the next in 7.5ms",
    ]
    other_account = wait_reasons(
        kind="crm.sync",
        payload={"account_id": 8},
        run_at=NOW + timedelta(seconds=30),
        policies=POLICIES,
        held={},
        usage=LimitUsage(running=usage.running, tokens={}),
        now=NOW,
    )
    assert other_account == ["not due until 2027-01-05T12:00:30+00:00"]


@pytest.mark.parametrize(
    ("payload", "part"),
    [
        ({"a": "x"}, "x"),
        ({"a": 7}, "7"),
        ({"a": True}, "true"),
        ({}, ""),
        ({"a": None}, ""),
        (3, ""),
    ],
)
def test_a_payload_field_gives_the_partition_as_text(payload: object, part: str) -> None:
    assert partition_of(Gate(name="g", kinds=("k",), concurrency=1, partition="a"), payload) == part


def test_gladd_check_describes_each_gate_in_one_line() -> None:
    assert [describe_gate(g) for g in gates_of(POLICIES)] == [
        "limit kind:crm.sync: 5 running, per account_id → crm.sync",
        "limit kind:mail.send: 50/s (burst 10) → mail.send",
        "limit limit:crm: 8 running, 100/s (burst 1) → crm.push, crm.sync",
    ]
