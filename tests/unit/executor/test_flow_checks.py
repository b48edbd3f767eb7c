"""A partition must be a payload field its kind declares, located at the key that names it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gladd.executor.flow_checks import flow_problems
from gladd.executor.kinds import KindRegistry, RegisteredKind, builtin_kinds
from gladd.executor.registry_checks import registry_problems
from gladd.policies import parse_policies, placed


class SyncPayload(BaseModel):
    account_id: int | None = None
    region: str = Field("eu", alias="zone")


async def _handler(ctx: object, payload: object) -> None:
    return None


KINDS = KindRegistry(
    [
        *builtin_kinds(),
        RegisteredKind(name="crm.sync", handler=_handler, payload_model=SyncPayload, plugin="crm"),
        RegisteredKind(name="crm.push", handler=_handler, plugin="crm"),
    ]
)


def located(text: str) -> list[str]:
    loaded = parse_policies(text.encode(), source="policies.toml")
    return [
        p.render("policies.toml") for p in placed(flow_problems(loaded.policies, KINDS), loaded)
    ]


def test_a_kinds_partition_must_be_a_field_of_its_payload_model() -> None:
    text = '[tasks."crm.sync"]\nconcurrency = 2\npartition = "acount_id"\n'
    assert located(text) == [
        'policies.toml:3:13: tasks."crm.sync".partition: kind crm.sync\'s payload has no '
        "field 'acount_id' (its fields: account_id, region, zone); declare the field in the "
        "kind's payload model (SyncPayload in plugin crm), or partition by one it has"
    ]


def test_a_kind_without_a_payload_model_cannot_be_partitioned() -> None:
    text = '[tasks."crm.push"]\nrate = "10/s"\npartition = "account_id"\n'
    assert located(text) == [
        'policies.toml:3:13: tasks."crm.push".partition: kind crm.push has no payload '
        "schema, so nothing says its payloads carry 'account_id'; declare the field in the "
        "kind's payload model (TaskKind(payload=...) in plugin crm), or remove partition"
    ]


def test_a_named_limits_partition_is_checked_against_every_kind_that_lists_it() -> None:
    text = """
[limits.accounts]
concurrency = 5
partition = "account_id"

[tasks."crm.sync"]
limits = ["accounts"]

[tasks."crm.push"]
limits = ["accounts"]

[tasks."gladd.sleep"]
limits = ["accounts"]
"""
    assert located(text) == [
        "policies.toml:4:13: limits.accounts.partition: kind crm.push has no payload schema, "
        "so nothing says its payloads carry 'account_id'; declare the field in the kind's "
        "payload model (TaskKind(payload=...) in plugin crm), or remove partition",
        "policies.toml:4:13: limits.accounts.partition: kind gladd.sleep's payload has no "
        "field 'account_id' (its fields: seconds); declare the field in the kind's payload "
        "model (SleepPayload in gladd itself), or partition by one it has",
    ]


def test_declared_fields_and_aliases_pass_and_unknown_kinds_are_not_judged() -> None:
    text = """
[limits.regions]
rate = "10/s"
partition = "zone"

[tasks."crm.sync"]
concurrency = 2
partition = "account_id"
limits = ["regions"]

[tasks."billing.run"]
concurrency = 1
partition = "invoice"
limits = ["regions"]
"""
    assert located(text) == []


def test_registry_problems_are_the_schedules_and_the_partitions_together() -> None:
    text = """
[schedules.sync]
every = "1h"
kind = "crm.synk"

[tasks."crm.push"]
concurrency = 1
partition = "account_id"
"""
    policies = parse_policies(text.encode(), source="policies.toml").policies
    assert [p.path for p in registry_problems(policies, KINDS)] == [
        "schedules.sync.kind",
        'tasks."crm.push".partition',
    ]
