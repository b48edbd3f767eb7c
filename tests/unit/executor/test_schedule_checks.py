"""A schedule is refused when its kind is unknown or refuses its payload, located at the key."""

from __future__ import annotations

from typing import Any

import pytest

from gladd.executor.kinds import KindRegistry, RegisteredKind, builtin_kinds
from gladd.executor.schedule_checks import schedule_problems
from gladd.policies import Policies, parse_policies, placed

TEXT = b"""
[schedules.fine]
every = "1h"
kind = "gladd.sleep"
payload = { seconds = 2 }

[schedules.typo]
every = "1h"
kind = "gladd.slep"

[schedules."crm.nightly"]
cron = "0 3 * * *"
kind = "gladd.sleep"
payload = { seconds = -1 }
"""


def test_unknown_kinds_and_refused_payloads_are_located_problems() -> None:
    loaded = parse_policies(TEXT, source="policies.toml")
    found = placed(schedule_problems(loaded.policies, KindRegistry(builtin_kinds())), loaded)
    assert [p.render("policies.toml") for p in found] == [
        "policies.toml:9:8: schedules.typo.kind: no task kind 'gladd.slep' is known "
        "(known kinds: gladd.noop, gladd.sleep)",
        'policies.toml:14:11: schedules."crm.nightly".payload: payload for gladd.sleep is '
        "invalid: seconds: Input should be greater than or equal to 0",
    ]


def test_the_kinds_own_runnable_check_is_applied() -> None:
    def needs_target(payload: Any, policies: Policies) -> None:
        if payload.get("target") not in policies.services:
            raise ValueError(f"no [services.{payload.get('target')}]")

    async def handler(ctx: object, payload: object) -> None:
        return None

    kinds = KindRegistry([RegisteredKind(name="push", handler=handler, runnable=needs_target)])
    policies = parse_policies(
        b'[schedules.p]\nevery = "1m"\nkind = "push"\npayload = { target = "crm" }\n',
        source="p",
    ).policies
    [problem] = schedule_problems(policies, kinds)
    assert problem.path == "schedules.p.payload"
    assert problem.message == "push task refused: no [services.crm]"


@pytest.mark.parametrize("kind", ["gladd.noop", "gladd.sleep"])
def test_good_schedules_have_no_problems(kind: str) -> None:
    policies = parse_policies(
        f'[schedules.s]\nevery = "1m"\nkind = "{kind}"\n'.encode(), source="p"
    ).policies
    assert schedule_problems(policies, KindRegistry(builtin_kinds())) == []
