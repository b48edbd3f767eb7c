"""Clients validate against the catalogue the daemon published, importing no plugin (issue 15):
the proof in a fresh interpreter on every store, and what the daemon does with a payload
the published schema could not fully judge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, field_validator

import gladd
from gladd.executor.catalogue import CatalogueKinds, kind_specs
from gladd.executor.service import TaskService
from gladd.plugins import Plugin, TaskKind
from gladd.plugins.api import EnqueueContext
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import load_policies
from gladd.store import TaskState
from gladd.store.factory import store_from_url
from gladd.testing import PluginTest

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies.toml"
NOW = datetime(2026, 3, 1, tzinfo=UTC)

# Run in a fresh interpreter: a client's enqueue, then every module it imported that is
# plugin code or plugin machinery (the daemon's; a client needs none of it).
ENQUEUE = """
import json, sys
import gladd

with gladd.SyncClient(sys.argv[1]) as client:
    ids = [client.enqueue(kind, payload) for kind, payload in json.loads(sys.argv[2])]
    try:
        client.enqueue("http.request", {"url": 5})
    except gladd.TaskRejected as exc:
        refused = str(exc)
async def main():
    batch = [{"kind": k, "payload": p} for k, p in json.loads(sys.argv[2])]
    async with gladd.Client(sys.argv[1]) as client:
        return await client.enqueue_many(batch)
import anyio
ids += anyio.run(main)
plugin_code = sorted(
    name for name in sys.modules
    # a plugin as discovery loads it (gladd_plugin_NAME), the plugin package, discovery
    if name.startswith(("gladd_plugin_", "gladd._shipped_plugins", "plugins", "gladd.plugins"))
    or "/plugins/" in (getattr(sys.modules[name], "__file__", None) or "")
)
print(json.dumps({"ids": ids, "refused": refused, "plugin_code": plugin_code}))
"""


def _in_fresh_interpreter(url: str, tasks: list[tuple[str, Any]]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    env.update(GLADD_ENV_FILE="", GLADD_POLICIES=str(POLICIES))
    done = subprocess.run(
        [sys.executable, "-c", ENQUEUE, url, json.dumps(tasks)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def _published_by_a_daemon(url: str) -> None:
    """The store as a daemon with the shipped plugins leaves it: migrated, kinds published."""
    store = store_from_url(url)
    await store.open()
    try:
        registry = known_kinds(load_policies(POLICIES).policies)
        await store.publish_kinds("node-a", kind_specs(registry), now=NOW)
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def published_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tasks.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.mark.anyio
async def test_a_client_enqueues_a_plugins_kind_without_importing_plugin_code(
    published_url: str,
) -> None:
    await _published_by_a_daemon(published_url)
    request = {"url": "https://api.example.org/hook", "json": {"n": 1}}

    result = _in_fresh_interpreter(published_url, [("http.request", request), ("gladd.noop", {})])

    assert result["plugin_code"] == []
    assert len(result["ids"]) == 4
    assert result["refused"] == (
        'payload for http.request is invalid: url: 5 is not of type "string"'
    )
    store = store_from_url(published_url)
    await store.open(create=False)
    try:
        stored = await store.get(result["ids"][0])
        assert stored is not None
        assert (stored.kind, stored.payload) == ("http.request", request)
    finally:
        await store.close()


def test_a_memory_client_imports_no_plugin_code_and_knows_the_built_ins() -> None:
    result = _in_fresh_interpreter("memory://", [("gladd.sleep", {"seconds": 0})])

    assert result["plugin_code"] == []
    assert result["refused"].startswith(
        "unknown task kind 'http.request': no gladd daemon has published its kinds to this "
        "store yet, so only the built-in kinds are known here"
    )


# -- what the schema cannot say: the daemon judges it at the attempt -------------------------


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str
    quantity: int

    @field_validator("sku")
    @classmethod
    def _upper(cls, sku: str) -> str:
        if sku != sku.upper():
            raise ValueError("a SKU is upper case")
        return sku


RAN: list[Any] = []


async def _ship(ctx: gladd.TaskContext, payload: Order) -> str:
    RAN.append(payload)
    return payload.sku


def _in_stock(ctx: EnqueueContext, payload: Order) -> None:
    if payload.quantity > 100:
        raise ValueError("at most 100 per order")


SHOP = Plugin(
    name="shop",
    kinds=[TaskKind(name="shop.ship", handler=_ship, payload=Order, check=_in_stock)],
)


@pytest.mark.anyio
async def test_what_only_the_model_or_the_check_refuses_kills_the_task_at_its_attempt() -> None:
    """The schema has no custom validators and no enqueue check, so a client stores these
    payloads; the daemon re-validates at the attempt, and the task is dead at once with the
    daemon's message, its handler never called."""
    RAN.clear()
    async with PluginTest(SHOP) as shop:
        kinds = CatalogueKinds(shop.store)
        assert shop.runtime is not None
        client = TaskService(shop.store, kinds, shop.runtime.policies, now=shop.now)
        await kinds.refresh_for(["shop.ship"])
        lower = await client.enqueue("shop.ship", {"sku": "ab-1", "quantity": 1})
        many = await client.enqueue("shop.ship", {"sku": "AB-1", "quantity": 500})
        with pytest.raises(gladd.TaskRejected, match='quantity: "x" is not of type "integer"'):
            await client.enqueue("shop.ship", {"sku": "AB-1", "quantity": "x"})

        ran = {t.id: t for t in await shop.run_due()}

    assert RAN == []
    first, second = ran[lower.id], ran[many.id]
    assert (first.state, second.state) == (TaskState.DEAD, TaskState.DEAD)
    assert first.attempt == second.attempt == 1
    assert first.errors[0].type == "gladd.errors.TaskRejected"
    assert first.errors[0].message == (
        "payload for shop.ship is invalid: sku: Value error, a SKU is upper case"
    )
    assert second.errors[0].message == "shop.ship task refused: at most 100 per order"
