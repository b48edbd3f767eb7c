"""The admin API's breaker routes on a real runtime and store: listing, isolate and reset
stored for every node, the errors a client gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from gladd.admin.app import create_app
from gladd.policies import parse_policies
from gladd.resilience import BreakerState, FakeClock
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store.gates import BreakerOverride
from gladd.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

POLICIES = parse_policies(
    b"""
[breaker.api]
failures = 2
open_for = "1m"
[services.billing]
breaker = "api"
""",
    source="policies.toml",
).policies
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    store = MemoryStore()
    settings = Settings(state_dir=tmp_path, plugin_paths=())
    yield Runtime(settings, POLICIES, store=store, clock=FakeClock())
    await store.close()


def client(runtime: Runtime, token: str | None = None) -> httpx.AsyncClient:
    app = create_app(
        runtime.board,
        resilience=runtime.resilience,
        now=lambda: NOW,
        persist_breaker=runtime.persist_breaker,
        token=token,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin")


async def test_isolate_and_reset_are_stored_for_every_node_and_answer_the_breaker(
    runtime: Runtime,
) -> None:
    await runtime.store.open()
    async with client(runtime, token="s3cret") as api:
        auth = {"Authorization": "Bearer s3cret"}
        assert (await api.get("/breakers")).status_code == 401
        listed = (await api.get("/breakers", headers=auth)).json()["breakers"]
        assert [(b["name"], b["state"], b["next_probe"]) for b in listed] == [
            ("api:billing", "closed", None)
        ]
        answer = await api.post("/breakers/billing/isolate", headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["name"], body["was"], body["state"]) == ("api:billing", "closed", "isolated")
        assert body["since"] == NOW.isoformat()
        (stored,) = await runtime.store.breaker_overrides()
        assert (stored.name, stored.by) == ("api:billing", "127.0.0.1 (token)")
        assert runtime.resilience.service("billing").breaker.state is BreakerState.ISOLATED

        answer = await api.post("/breakers/api:billing/reset", headers=auth)
        assert answer.json()["state"] == "closed"
        assert await runtime.store.breaker_overrides() == []


async def test_an_unknown_breaker_is_a_404_naming_the_known_ones(runtime: Runtime) -> None:
    await runtime.store.open()
    async with client(runtime) as api:
        answer = await api.post("/breakers/nope/isolate")
        assert answer.status_code == 404
        assert answer.json() == {
            "error": "no breaker 'nope'; the breakers are: api:billing",
            "known": ["api:billing"],
        }
        assert (await api.get("/breakers/api:billing/isolate")).status_code == 405


async def test_a_store_that_cannot_keep_the_override_is_a_503_changing_nothing(
    runtime: Runtime,
) -> None:
    async with client(runtime) as api:  # the store is not open
        answer = await api.post("/breakers/billing/isolate")
        assert answer.status_code == 503
        assert "could not store the override for every node" in answer.json()["error"]
        assert runtime.resilience.service("billing").breaker.state is BreakerState.CLOSED


async def test_the_reset_of_an_isolation_whose_breaker_is_gone_ends_it(runtime: Runtime) -> None:
    """A node isolated `old:crm`; the policies have no such breaker now: the hold is listed,
    and a reset deletes it from the store rather than answering 404 for ever."""
    await runtime.store.open()
    runtime.resilience.sync_isolated({"old:crm": "10.0.0.9 (no token)"})
    await runtime.store.isolate_breaker(
        BreakerOverride(name="old:crm", by="10.0.0.9 (no token)", created_at=NOW)
    )
    async with client(runtime) as api:
        listed = (await api.get("/breakers")).json()
        assert listed["isolated"] == ["old:crm"]
        assert (await api.post("/breakers/old:crm/isolate")).status_code == 404
        answer = await api.post("/breakers/old:crm/reset")
        assert answer.json() == {"name": "old:crm", "state": "closed", "was": "isolated"}
        assert (await api.get("/breakers")).json()["isolated"] == []
    assert await runtime.store.breaker_overrides() == []
