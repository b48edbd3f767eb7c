"""Validating enqueues against the kinds catalogue: what a client refuses, and when it reads
the catalogue again. On the in-memory store (the contract suite proves every store keeps
the catalogue alike); time on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field

from gladd.errors import BatchRejected, TaskRejected
from gladd.executor.catalogue import (
    MAX_AGE,
    UNKNOWN_REREAD,
    CatalogueKinds,
    kind_specs,
)
from gladd.executor.kinds import KindRegistry, RegisteredKind, TaskContext
from gladd.executor.service import TaskService
from gladd.policies import Policies
from gladd.store import KindSpec, TaskState
from gladd.store.memory import MemoryStore
from tests.unit.manual_clock import ManualClock

pytestmark = pytest.mark.anyio

PUBLISHED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICIES = Policies()


class Mail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str
    copies: int = Field(1, ge=1, le=10)
    tags: list[str] = []


async def _send(ctx: TaskContext, payload: Mail) -> None:
    return None


SEND = RegisteredKind(
    name="mail.send", handler=_send, payload_model=Mail, plugin="mail", description="send mail"
)
ANY = KindSpec(name="mail.any", plugin="mail")


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    made = MemoryStore()
    await made.open()
    yield made
    await made.close()


async def publish(store: MemoryStore, node: str, specs: list[KindSpec]) -> None:
    await store.publish_kinds(node, specs, now=PUBLISHED)


def service(store: MemoryStore, kinds: KindRegistry) -> TaskService:
    return TaskService(store, kinds, lambda: POLICIES, now=lambda: PUBLISHED)


def test_a_node_publishes_each_kind_with_its_models_json_schema() -> None:
    specs = kind_specs(KindRegistry([SEND]))

    assert specs == [
        KindSpec(
            name="mail.send",
            plugin="mail",
            description="send mail",
            payload_schema=Mail.model_json_schema(),
        )
    ]


async def test_a_published_kind_is_checked_by_its_schema(store: MemoryStore) -> None:
    await publish(store, "n1", kind_specs(KindRegistry([SEND])))
    kinds = CatalogueKinds(store, clock=ManualClock().monotonic)
    tasks = service(store, kinds)
    await kinds.refresh_for(["mail.send"])

    stored = await tasks.enqueue("mail.send", {"to": "a@example.org", "copies": 2})
    assert (await tasks.get(stored.id)).payload == {"to": "a@example.org", "copies": 2}

    with pytest.raises(TaskRejected) as refused:
        await tasks.enqueue("mail.send", {"copies": 0, "tags": ["x", 3], "cc": "b"})
    assert str(refused.value) == (
        "payload for mail.send is invalid: copies: 0 is less than the minimum of 1; "
        'tags.1: 3 is not of type "string"; cc: Extra inputs are not permitted; '
        "to: Field required"
    )
    assert (await store.counts())[TaskState.PENDING] == 1


async def test_a_batch_names_each_refused_item_and_field(store: MemoryStore) -> None:
    await publish(store, "n1", kind_specs(KindRegistry([SEND])))
    kinds = CatalogueKinds(store, clock=ManualClock().monotonic)
    await kinds.refresh_for(["mail.send"])

    with pytest.raises(BatchRejected) as refused:
        await service(store, kinds).enqueue_many(
            [
                {"kind": "mail.send", "payload": {"to": "a@example.org"}},
                {"kind": "mail.send", "payload": {"to": 7}},
                {"kind": "mail.sned", "payload": {}},
            ]
        )
    assert [(p.index, p.field) for p in refused.value.problems] == [(1, "payload"), (2, "kind")]
    assert refused.value.problems[0].message == (
        'payload for mail.send is invalid: to: 7 is not of type "string"'
    )
    assert sum((await store.counts()).values()) == 0


async def test_an_unknown_kind_names_the_catalogue_it_is_not_in(store: MemoryStore) -> None:
    await publish(store, "n1", [ANY])
    await publish(store, "n2", [ANY])
    kinds = CatalogueKinds(store, clock=ManualClock().monotonic)
    await kinds.refresh_for(["mail.snd"])

    with pytest.raises(TaskRejected) as refused:
        await service(store, kinds).enqueue("mail.snd", {})
    assert str(refused.value) == (
        "unknown task kind 'mail.snd': not in the catalogue the daemon published at "
        "2026-03-01T12:00:00+00:00 (nodes: n1, n2); is its plugin configured, and has the "
        "daemon started since? (known kinds: gladd.noop, gladd.sleep, mail.any)"
    )


async def test_without_a_catalogue_the_built_in_kinds_are_checked_by_their_models(
    store: MemoryStore,
) -> None:
    kinds = CatalogueKinds(store, clock=ManualClock().monotonic)
    tasks = service(store, kinds)
    await kinds.refresh_for(["mail.any"])

    with pytest.raises(TaskRejected, match="no gladd daemon has published its kinds"):
        await tasks.enqueue("mail.any", {})
    with pytest.raises(TaskRejected, match="seconds: Input should be less than or equal"):
        await tasks.enqueue("gladd.sleep", {"seconds": 86401})
    assert (await tasks.enqueue("gladd.sleep", {"seconds": 1})).created


async def test_nodes_with_different_schemas_must_all_accept_a_payload(
    store: MemoryStore,
) -> None:
    """A rolling deploy: n2 runs the plugin's next version, which takes a new field. Until
    n1 runs it too, a task may land on n1, so a payload using the field is refused."""
    old = kind_specs(KindRegistry([SEND]))[0]
    new_schema = Mail.model_json_schema()
    new_schema["properties"]["urgent"] = {"type": "boolean"}
    new = KindSpec(name=old.name, plugin="mail", payload_schema=new_schema)
    await publish(store, "n1", [old])
    await publish(store, "n2", [new])
    kinds = CatalogueKinds(store, clock=ManualClock().monotonic)
    tasks = service(store, kinds)
    await kinds.refresh_for(["mail.send"])

    assert (await tasks.enqueue("mail.send", {"to": "a@example.org"})).created
    with pytest.raises(TaskRejected) as refused:
        await tasks.enqueue("mail.send", {"to": "a@example.org", "urgent": True})
    assert str(refused.value).startswith(
        "payload for mail.send is invalid: urgent: Extra inputs are not permitted (by the "
        "schema node n1 published: nodes differ on this kind's schema"
    )


async def test_a_broken_published_schema_refuses_saying_whose_it_is(store: MemoryStore) -> None:
    odd = KindSpec(name="mail.odd", plugin="mail", payload_schema={"type": 5})
    await publish(store, "n1", [odd])
    kinds = CatalogueKinds(store, clock=ManualClock().monotonic)
    await kinds.refresh_for(["mail.odd"])

    with pytest.raises(TaskRejected, match="the schema node n1 published for it is not a valid"):
        await service(store, kinds).enqueue("mail.odd", {})


async def test_the_catalogue_is_read_again_when_old_or_a_kind_is_unknown(
    store: MemoryStore,
) -> None:
    clock = ManualClock()
    kinds = CatalogueKinds(store, clock=clock.monotonic)
    await kinds.refresh_for(["gladd.noop"])
    assert kinds.reads == 1

    await publish(store, "n1", [ANY])  # a daemon started since, with a new plugin
    await kinds.refresh_for(["gladd.noop", "mail.any"])
    assert (kinds.reads, kinds.get("mail.any")) == (1, None), "re-read at once after a read"
    await clock.advance(UNKNOWN_REREAD)
    await kinds.refresh_for(["mail.any"])
    assert kinds.reads == 2
    assert kinds.get("mail.any") is not None

    await kinds.refresh_for(["mail.any", "gladd.sleep"])  # all known: the copy serves
    await kinds.refresh_for(["mail.wrong"])  # unknown, but read less than a second ago
    assert kinds.reads == 2

    await publish(store, "n1", [])  # the plugin was removed
    await clock.advance(MAX_AGE)
    await kinds.refresh_for(["mail.any"])
    assert kinds.reads == 3
    assert kinds.get("mail.any") is None


async def test_a_published_kind_keeps_its_services_for_pauses_and_cooldowns(
    store: MemoryStore,
) -> None:
    """``gladd tasks pauses`` and ``tasks show`` say which kinds a service's pause holds."""
    await publish(store, "n1", [KindSpec(name="mail.any", plugin="mail", services=("smtp",))])
    await publish(store, "n2", [KindSpec(name="mail.any", plugin="mail", services=("relay",))])
    kinds = CatalogueKinds(store, clock=ManualClock().monotonic)
    await kinds.refresh_for(["mail.any"])

    assert kinds.require("mail.any").services == ("relay", "smtp")
