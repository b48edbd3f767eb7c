"""The admin API's listing, stats, workers and bulk routes (issue 14), in-process over httpx's
ASGI transport on a real TaskService and every store: what an operator sees, and a 400
naming the parameter for every bad one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from gladd.admin.app import create_app
from gladd.executor.service import TaskService
from gladd.observe.health import HealthBoard
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import parse_policies
from gladd.store import Failed, NewTask, Store, TaskError

pytestmark = pytest.mark.anyio

POLICIES = parse_policies(b"", source="policies.toml").policies
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def api(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    service = TaskService(store, known_kinds(POLICIES), lambda: POLICIES, now=lambda: NOW)
    app = create_app(HealthBoard(version="test", service_id="test"), tasks=service)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        yield client


async def dead(
    store: Store, n: int, *, kind: str = "mail", message: str = "Mailbox full"
) -> list[int]:
    ids = [
        (await store.enqueue(NewTask(kind=kind, max_attempts=1), now=NOW - timedelta(hours=2))).id
        for _ in range(n)
    ]
    for task in await store.claim(worker="w1", limit=n, now=NOW, kinds=[kind]):
        error = TaskError(type="SMTPError", message=message, attempt=1, at=NOW)
        await store.finish(
            [Failed(id=task.id, token=task.token, error=error, retry_at=None)], now=NOW
        )
    return ids


async def test_a_listing_pages_with_a_cursor_and_masks_secrets(
    api: httpx.AsyncClient, store: Store
) -> None:
    ids = [
        (
            await store.enqueue(NewTask(kind="mail", payload={"to": "a", "api_key": "s3"}), now=NOW)
        ).id
        for _ in range(5)
    ]
    first = (await api.get("/tasks", params={"limit": 3})).json()
    assert [t["id"] for t in first["tasks"]] == ids[::-1][:3]
    assert first["tasks"][0]["payload"] == {"to": "a", "api_key": "***"}
    second = (await api.get("/tasks", params={"limit": 3, "cursor": first["next"]})).json()
    assert [t["id"] for t in second["tasks"]] == ids[::-1][3:]
    assert second["next"] is None
    assert (await api.get(f"/tasks/{ids[0]}")).json()["payload"]["api_key"] == "s3"


async def test_a_listing_filters(api: httpx.AsyncClient, store: Store) -> None:
    failed = await dead(store, 2)
    other = await dead(store, 1, kind="sms", message="no route")
    fresh = (await store.enqueue(NewTask(kind="mail"), now=NOW)).id

    async def ids(**params: str) -> list[int]:
        response = await api.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["tasks"]]

    assert await ids(state="dead", kind="mail") == failed[::-1]
    assert await ids(state="dead,pending") == [fresh, *other, *failed[::-1]]
    assert await ids(error="MAILBOX") == failed[::-1]
    assert await ids(since="1h") == [fresh]
    assert await ids(until="2029-12-31T23:00:00+00:00") == [*other, *failed[::-1]]
    assert await ids(kind="nul\x00") == []


@pytest.mark.parametrize(
    ("params", "param", "says"),
    [
        ({"limit": "1001"}, "limit", "from 1 to 1000"),
        ({"limit": "0"}, "limit", "from 1 to 1000"),
        ({"cursor": "!!"}, "cursor", "not a cursor"),
        ({"cursor": "bm90IGFuIGlk"}, "cursor", "not a cursor"),
        ({"state": "zombie"}, "state", "not a state"),
        ({"since": "yesterday"}, "since", "neither a time nor a duration"),
        ({"since": "1h", "until": "2h"}, "until", "later than since"),
        ({"error": "x" * 201}, "error", "at most 200"),
        ({"stat": "dead"}, "stat", "not a parameter"),
    ],
)
async def test_a_bad_listing_parameter_is_a_400_naming_it(
    api: httpx.AsyncClient, params: dict[str, str], param: str, says: str
) -> None:
    response = await api.get("/tasks", params=params)
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith(f"{param}: "), message
    assert says in message, message


async def test_stats_answer_per_kind_and_totals(api: httpx.AsyncClient, store: Store) -> None:
    await dead(store, 2)
    await store.enqueue(NewTask(kind="sms"), now=NOW)
    body = (await api.get("/tasks/stats")).json()
    assert body["kinds"]["mail"]["dead"] == 2
    assert body["kinds"]["sms"] == {
        "pending": 1,
        "running": 0,
        "succeeded": 0,
        "dead": 0,
        "cancelled": 0,
    }
    assert body["totals"]["dead"] == 2
    assert body["totals"]["pending"] == 1
    assert body["total"] == 3


async def test_workers_show_their_last_heartbeat(api: httpx.AsyncClient, store: Store) -> None:
    await store.heartbeat(worker="node-a", now=NOW - timedelta(seconds=4), running=[])
    body = (await api.get("/workers")).json()
    assert body == {
        "workers": [
            {
                "id": "node-a",
                "last_seen": (NOW - timedelta(seconds=4)).isoformat(),
                "seen_ago": 4.0,
                "running": 0,
            }
        ]
    }


async def test_bulk_retry_previews_then_acts_on_what_was_counted(
    api: httpx.AsyncClient, store: Store
) -> None:
    failed = await dead(store, 3)
    await dead(store, 1, kind="sms")
    request = {"action": "retry", "filter": {"state": "dead", "kind": "mail"}}
    preview = await api.post("/tasks/bulk/preview", json=request)
    assert preview.json() == {"action": "retry", "count": 3}
    await dead(store, 1)  # one more dies before the operator confirms
    refused = await api.post("/tasks/bulk", json={**request, "expect": 3})
    assert refused.status_code == 409
    assert "4 tasks match now" in refused.json()["error"]
    assert (await store.stats()).by_kind["mail"]["dead"] == 4  # nothing changed
    done = await api.post("/tasks/bulk", json={**request, "expect": 4})
    assert done.status_code == 200
    body = done.json()
    assert body["count"] == 4
    assert body["skipped"] == 0
    assert set(failed) <= set(body["ids"])
    retried = await store.get(failed[0])
    assert retried is not None
    assert retried.timeline[-1].event == "retried"
    assert retried.timeline[-1].fields == {"by": "127.0.0.1 (no token)"}
    stats = (await store.stats()).by_kind
    assert stats["mail"]["pending"] == 4
    assert stats["sms"]["dead"] == 1


async def test_bulk_cancel_takes_only_pending_and_running(
    api: httpx.AsyncClient, store: Store
) -> None:
    await dead(store, 1)
    pending = [(await store.enqueue(NewTask(kind="mail"), now=NOW)).id for _ in range(2)]
    request = {"action": "cancel", "filter": {"kind": "mail"}}
    assert (await api.post("/tasks/bulk/preview", json=request)).json()["count"] == 2
    body = (await api.post("/tasks/bulk", json={**request, "expect": 2})).json()
    assert sorted(body["ids"]) == pending
    assert (await store.stats()).by_kind["mail"]["cancelled"] == 2


async def test_a_bulk_preview_counts_the_same_from_the_kept_counts_as_by_counting(
    api: httpx.AsyncClient, store: Store
) -> None:
    # state and kind only: read from the counts the store keeps; with error text: counted.
    await dead(store, 2)
    await dead(store, 3, message="Connection refused")
    await dead(store, 1, kind="sms")
    cases = [
        ({"state": "dead"}, 6),
        ({"kind": "mail"}, 5),
        ({"kind": "nothing"}, 0),
        ({}, 6),
        ({"kind": "mail", "error": "refused"}, 3),
        ({"error": "mailbox"}, 3),
    ]
    for where, count in cases:
        preview = await api.post("/tasks/bulk/preview", json={"action": "retry", "filter": where})
        assert preview.json()["count"] == count, where


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"action": "explode"}, "action"),
        ({"action": "retry", "filter": {"state": "pending"}}, "filter.state"),
        ({"action": "retry", "filter": {"sate": "dead"}}, "filter.sate"),
        ({"action": "retry", "filter": {"since": "soon"}}, "filter.since"),
        ({"action": "retry", "filter": {"kind": 3}}, "filter.kind"),
        ({"action": "retry", "filter": "dead"}, "filter"),
        ({"action": "retry", "expect": "3"}, "expect"),
        ({"action": "retry", "expect": -1}, "expect"),
        ({"action": "retry"}, "expect"),
        ({"action": "retry", "expect": 1, "force": True}, "force"),
        ([], "body"),
    ],
)
async def test_a_bad_bulk_request_is_a_400_naming_the_field(
    api: httpx.AsyncClient, body: object, param: str
) -> None:
    response = await api.post("/tasks/bulk", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{param}: "), response.json()
