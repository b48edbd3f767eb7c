"""``POST /tasks`` answered in front of Starlette (gladd.admin.fast_enqueue): the answers a
client gets are those of the Starlette route, and the admin token still guards it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from gladd.admin.app import create_app
from gladd.admin.fast_enqueue import MAX_BODY
from gladd.admin.tasks import task_routes
from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.executor.service import TaskService
from gladd.observe.health import HealthBoard
from gladd.policies import parse_policies
from gladd.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

POLICIES = parse_policies(b"", source="policies.toml").policies
STORE = "ab" * 32  # the daemon's store, as Gladd-Store-SHA256 names it
JSON = {"content-type": "application/json"}
NOOP = b'{"kind": "gladd.noop"}'

# (what, body, headers): every way a POST /tasks is answered, each sent to both apps in turn.
REQUESTS: list[tuple[str, bytes, dict[str, str]]] = [
    ("one task", NOOP, JSON),
    ("no content type", NOOP, {}),
    ("a unique key, new", b'{"kind": "gladd.noop", "unique_key": "k"}', JSON),
    ("the unique key again", b'{"kind": "gladd.noop", "unique_key": "k"}', JSON),
    ("a delay as text", b'{"kind": "gladd.noop", "delay": "1m30s", "priority": 3}', JSON),
    ("a batch", b'[{"kind": "gladd.noop"}, {"kind": "gladd.noop", "unique_key": "k"}]', JSON),
    ("an empty batch", b"[]", JSON),
    ("a batch with refused items", b'[{"kind": "nope"}, {"kind": 5}, 7]', JSON),
    ("not JSON", b'{"kind": ', JSON),
    ("NaN", b'{"kind": "gladd.noop", "payload": NaN}', JSON),
    ("not declared JSON", NOOP, {"content-type": "text/plain"}),
    ("a wrong field type", b'{"kind": "gladd.noop", "priority": "5"}', JSON),
    ("an unknown field", b'{"kind": "gladd.noop", "colour": "red"}', JSON),
    ("an unknown kind", b'{"kind": "no.such.kind"}', JSON),
    ("a bad delay", b'{"kind": "gladd.noop", "delay": "soon"}', JSON),
    ("a body too large", b'{"kind": "gladd.noop", "payload": "' + b"x" * MAX_BODY + b'"}', JSON),
    ("another store", NOOP, {**JSON, "gladd-store-sha256": "cd" * 32}),
    ("this store", NOOP, {**JSON, "gladd-store-sha256": STORE}),
    ("a traced enqueue", NOOP, {**JSON, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}),
]


def _service() -> TaskService:
    return TaskService(MemoryStore(), KindRegistry(builtin_kinds()), lambda: POLICIES)


@asynccontextmanager
async def _client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        yield client


def _seen(response: httpx.Response) -> tuple[int, str, Any, str | None]:
    return (
        response.status_code,
        response.headers["content-type"],
        json.loads(response.content),
        response.headers.get("connection"),
    )


async def _answers(
    app: ASGIApp, requests: list[tuple[str, bytes, dict[str, str]]]
) -> list[tuple[int, str, Any, str | None]]:
    async with _client(app) as client:
        return [
            _seen(await client.post("/tasks", content=body, headers=headers))
            for _, body, headers in requests
        ]


async def test_every_answer_is_the_starlette_routes_answer() -> None:
    fast, plain = _service(), _service()
    await fast.store.open()
    await plain.store.open()
    board = HealthBoard(version="test", service_id="test")
    through_fast_path = create_app(board, tasks=fast, store_sha256=STORE)
    starlette_only = Starlette(routes=task_routes(plain, store_sha256=STORE))

    got = await _answers(through_fast_path, REQUESTS)
    expected = await _answers(starlette_only, REQUESTS)
    for (what, _, _), mine, theirs in zip(REQUESTS, got, expected, strict=True):
        assert mine == theirs, what
    statuses = {what: seen[0] for (what, _, _), seen in zip(REQUESTS, got, strict=True)}
    assert statuses == {
        "one task": 201,
        "no content type": 201,
        "a unique key, new": 201,
        "the unique key again": 200,
        "a delay as text": 201,
        "a batch": 201,
        "an empty batch": 201,
        "a batch with refused items": 422,
        "not JSON": 400,
        "NaN": 400,
        "not declared JSON": 415,
        "a wrong field type": 400,
        "an unknown field": 400,
        "an unknown kind": 422,
        "a bad delay": 400,
        "a body too large": 413,
        "another store": 421,
        "this store": 201,
        "a traced enqueue": 201,
    }
    assert [t.id for t in await fast.store.list()] == [t.id for t in await plain.store.list()]


async def test_a_store_not_open_yet_is_a_503_as_before() -> None:
    service = _service()
    board = HealthBoard(version="test", service_id="test")
    closed: Callable[[], bool] = lambda: False  # noqa: E731 - the store's verdict
    app = create_app(board, tasks=service, store_open=closed)
    async with _client(app) as client:
        answer = await client.post("/tasks", content=NOOP, headers=JSON)
    assert answer.status_code == 503
    assert answer.json() == {"error": "the task store is not open yet (database unavailable?)"}


async def test_other_methods_and_paths_still_reach_starlette() -> None:
    service = _service()
    await service.store.open()
    app = create_app(HealthBoard(version="test", service_id="test"), tasks=service)
    async with _client(app) as client:
        made = await client.post("/tasks", content=NOOP, headers=JSON)
        listed = await client.get("/tasks")
        wrong = await client.put("/tasks", content=NOOP, headers=JSON)
    assert listed.json()["tasks"][0]["id"] == made.json()["id"]
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD, POST"


@pytest.mark.parametrize("body", [NOOP, b'[{"kind": "gladd.noop"}]'], ids=["one", "batch"])
async def test_an_enqueue_still_needs_the_admin_token(body: bytes) -> None:
    service = _service()
    await service.store.open()
    board = HealthBoard(version="test", service_id="test")
    app = create_app(board, tasks=service, token="s3cret")
    async with _client(app) as client:
        anonymous = await client.post("/tasks", content=body, headers=JSON)
        wrong = await client.post(
            "/tasks", content=body, headers={**JSON, "authorization": "Bearer guess"}
        )
        assert await service.store.list() == []
        right = await client.post(
            "/tasks", content=body, headers={**JSON, "authorization": "Bearer s3cret"}
        )
    assert anonymous.status_code == 401
    assert anonymous.json() == {"error": "this route needs Authorization: Bearer TOKEN"}
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="gladd"'
    assert (wrong.status_code, wrong.json()) == (401, {"error": "wrong admin token"})
    assert right.status_code == 201
    assert len(await service.store.list()) == 1
