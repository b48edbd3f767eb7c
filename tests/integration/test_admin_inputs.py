"""Hostile and mistaken input to the admin API: never a 5xx, always a JSON error that says
what is wrong, and nothing stored that would break a read.

The app runs in-process (httpx's ASGI transport) on a real TaskService over a real SQLite
file and a real PostgreSQL database, with the shipped plugins' kinds. The store lives in a
blocking portal's event loop, so hypothesis drives plain synchronous test functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from gladd.admin.app import create_app
from gladd.admin.fast_enqueue import MAX_BATCH_BODY, MAX_BODY
from gladd.executor.service import MAX_BATCH, TaskService
from gladd.observe.health import HealthBoard
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import parse_policies
from gladd.reload.reloader import ReloadResult
from gladd.store import NewTask, Store, TaskError
from gladd.store.base import Failed, Succeeded
from gladd.store.postgres.store import PostgresStore
from gladd.store.sqlite.store import SQLiteStore

POLICIES = parse_policies(
    b'[services.hooks]\nhosts = ["127.0.0.1"]\n', source="policies.toml"
).policies
NOW = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class Admin:
    """The admin app on one store, called synchronously through the portal."""

    backend: str
    url: str
    store: Store
    portal: BlockingPortal
    client: httpx.AsyncClient
    problems: list[str] = field(default_factory=list)  # ERROR log lines and tracebacks

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.request(method, path, **options))

    def call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.portal.call(lambda: func(*args, **kwargs))


class _Problems(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(self.format(record))


async def _reload(trigger: str) -> ReloadResult:
    return ReloadResult(outcome="unchanged", trigger=trigger, generation=1, sha256="0" * 64)


def _metrics() -> tuple[bytes, str]:
    return b"gladd_up 1\n", "text/plain; version=0.0.4"


def _postgres_database(server: str) -> Iterator[str]:
    name = f"gladd_admin_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(server)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def admin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admin]:
    databases: Iterator[str] | None = None
    store: Store
    if request.param == "sqlite":
        url = str(tmp_path_factory.mktemp("admin") / "gladd.db")
        store = SQLiteStore(url)
    else:
        databases = _postgres_database(request.getfixturevalue("postgres_url"))
        url = next(databases)
        store = PostgresStore(url)
    problems: list[str] = []
    handler = _Problems(problems)
    logging.getLogger().addHandler(handler)
    sink = logger.add(lambda m: problems.append(str(m)), level="ERROR")
    try:
        with start_blocking_portal() as portal:
            portal.call(store.open)
            service = TaskService(store, known_kinds(POLICIES), lambda: POLICIES)
            board = HealthBoard(version="test", service_id="test")
            board.started = True  # a node serving: health 503s are verdicts, not failures
            app = create_app(board, tasks=service, reload=_reload, metrics=_metrics, token=None)
            transport = httpx.ASGITransport(app, raise_app_exceptions=False)
            client = httpx.AsyncClient(transport=transport, base_url="http://admin")
            try:
                yield Admin(request.param, url, store, portal, client, problems)
            finally:
                portal.call(client.aclose)
                portal.call(store.close)
    finally:
        logger.remove(sink)
        logging.getLogger().removeHandler(handler)
        if databases is not None:
            next(databases, None)


def _assert_answered(admin: Admin, response: httpx.Response) -> None:
    """What every answer must be: no 5xx, a JSON error for a 4xx, nothing in the log."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.status_code < 500, f"{where}: {response.text[:300]}"
    if response.status_code >= 400 and response.request.method != "HEAD":
        body = response.json()
        assert isinstance(body, dict), where
        assert isinstance(body.get("error"), str), where
        assert body["error"], where
    assert not admin.problems, admin.problems


# -- the inputs seen answering 500, or accepted though they should not be -----------------

NESTED_5000 = b'{"kind": "gladd.noop", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
NESTED_200 = b'{"kind": "gladd.noop", "payload": ' + b"[" * 200 + b"]" * 200 + b"}"
DEPTH = "at most 100 levels of arrays and objects"
JSON_HEADERS = {"content-type": "application/json"}

CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    (
        "POST",
        "/tasks",
        {"content": rb'{"kind": "gladd.noop", "payload": {"x": "\udfff"}}'},
        422,
        "payload for gladd.noop refused: payload.x: contains a lone surrogate (\\udfff), "
        "which is not valid Unicode text",
    ),
    (
        "POST",
        "/tasks",
        {"content": rb'{"kind": "gladd.noop", "payload": {"\ud800": 1}}'},
        422,
        "payload for gladd.noop refused: payload: a key contains a lone surrogate (\\ud800), "
        "which is not valid Unicode text",
    ),
    (
        "POST",
        "/tasks",
        {"content": b"[" * 100_000},
        400,
        f"body is nested too deeply to decode: a payload may nest {DEPTH}",
    ),
    ("POST", "/tasks", {"content": NESTED_5000}, 400, "body is nested too deeply to decode"),
    (
        "POST",
        "/tasks",
        {"content": NESTED_200},
        422,
        f"payload for gladd.noop refused: payload is nested more than 100 levels deep; {DEPTH}",
    ),
    (
        "GET",
        "/tasks/99999999999999999999999",
        {},
        404,
        "no task with id 99999999999999999999999 (task ids fit a signed 64-bit integer)",
    ),
    (
        "GET",
        "/tasks/9223372036854775808",
        {},
        404,
        "no task with id 9223372036854775808 (task ids fit a signed 64-bit integer)",
    ),
    (
        "POST",
        "/tasks/9223372036854775808/cancel",
        {},
        404,
        "no task with id 9223372036854775808 (task ids fit a signed 64-bit integer)",
    ),
    ("GET", "/tasks/-1", {}, 404, "no task with id -1"),
    ("POST", "/tasks/-1/retry", {}, 404, "no task with id -1"),
    ("GET", "/tasks/abc", {}, 404, "no task with id 'abc': task ids are whole numbers"),
    (
        "GET",
        "/tasks?limit=1000000000000",
        {},
        400,
        "limit: must be a whole number from 1 to 1000 (got '1000000000000')",
    ),
    ("GET", "/tasks?limit=0", {}, 400, "limit: must be a whole number from 1 to 1000 (got '0')"),
    ("GET", "/tasks?limit=%C2%B2", {}, 400, "limit: must be a whole number from 1 to 1000"),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "delay": "99999999999d"}},
        422,
        "delay must be at least 0s and at most 3650d, ten years (got 8.64e+15s)",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "timeout": "99999999999d"}},
        422,
        "timeout must be more than 0s and at most 3650d, ten years (got 8.64e+15s)",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "delay": "9" * 400 + "s"}},
        422,
        "delay must be at least 0s and at most 3650d, ten years (got infs)",
    ),
    (
        "POST",
        "/tasks",
        {"content": b'{"kind": "gladd.noop"}', "headers": {"content-type": "text/plain"}},
        415,
        "the body must be JSON: send Content-Type: application/json (got 'text/plain')",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "priority": True}},
        400,
        "priority: Input should be a valid integer",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "priority": "5"}},
        400,
        "priority: Input should be a valid integer",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "priority": 10**30}},
        422,
        f"priority must be a whole number from -1000 to 1000 (got {10**30})",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "unique_key": "order\x0017"}},
        422,
        "unique_key contains a NUL character (\\u0000), which the task store cannot keep",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.noop", "payload": {"note": "a\x00b"}}},
        422,
        "payload for gladd.noop refused: payload.note: contains a NUL character (\\u0000), "
        "which the task store cannot keep",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "gladd.no\x00op"}},
        422,
        "kind contains a NUL character (\\u0000), which the task store cannot keep "
        "(got 'gladd.no\\x00op')",
    ),
    (
        "POST",
        "/tasks",
        {"content": b'{"kind": "gladd.noop", "payload": {"x": NaN}}', "headers": JSON_HEADERS},
        400,
        "body is not valid JSON: NaN is not a JSON number",
    ),
    (
        "POST",
        "/tasks",
        {"content": b'{"kind": "gladd.noop", "payload": ' + b"9" * 5000 + b"}"},
        400,
        "body is not valid JSON: Exceeds the limit (4300 digits)",
    ),
    (
        "POST",
        "/tasks",
        {"content": b"\xff\xfe\x00garbage"},
        400,
        "body is not valid JSON",
    ),
    (
        "POST",
        "/tasks",
        {"json": {"kind": "http.request", "payload": {"url": "http://localhost:9/x"}}},
        422,
        "http.request task refused: http: no service claims host localhost: add it to the "
        'hosts of a [services.NAME] in policies.toml, name one with "service" in the payload, '
        "or set [plugins.http] default_service",
    ),
    (
        "POST",
        "/tasks",
        {
            "json": {
                "kind": "http.request",
                "payload": {"url": "http://127.0.0.1:9/x", "service": "billing"},
            }
        },
        422,
        "http.request task refused: http: no [services.billing] in policies.toml (services: hooks)",
    ),
    ("PUT", "/tasks", {}, 405, "/tasks does not take PUT (allowed: GET, HEAD, POST)"),
    ("DELETE", "/tasks/1", {}, 405, "/tasks/1 does not take DELETE (allowed: GET, HEAD)"),
    ("POST", "/health", {}, 405, "/health does not take POST (allowed: GET, HEAD)"),
    ("GET", "/reload", {}, 405, "/reload does not take GET (allowed: POST)"),
    ("GET", "/nope", {}, 404, "no such route: GET /nope"),
    ("GET", "/tasks/1/cancel", {}, 405, "/tasks/1/cancel does not take GET (allowed: POST)"),
]


@pytest.mark.parametrize(
    ("method", "path", "options", "status", "message"),
    CASES,
    ids=[f"{c[0]} {c[1][:40]} -> {c[3]}" for c in CASES],
)
def test_bad_input_gets_a_precise_4xx_and_stores_nothing(
    admin: Admin, method: str, path: str, options: dict[str, Any], status: int, message: str
) -> None:
    before = admin.request("GET", "/tasks?limit=1000").json()["tasks"]
    response = admin.request(method, path, **options)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"].startswith(message)
    after = admin.request("GET", "/tasks?limit=1000").json()["tasks"]
    assert after == before
    _assert_answered(admin, response)


def test_a_plain_json_enqueue_still_works_and_a_reload_and_scrape_answer(admin: Admin) -> None:
    made = admin.request("POST", "/tasks", json={"kind": "gladd.noop", "payload": {"x": "é"}})
    assert made.status_code == 201
    shown = admin.request("GET", f"/tasks/{made.json()['id']}")
    assert shown.json()["payload"] == {"x": "é"}
    # No Content-Type, or a JSON media type with parameters or a +json suffix, is JSON.
    for headers in ({}, {"content-type": "application/json; charset=utf-8"}):
        bare = admin.request("POST", "/tasks", content=b'{"kind": "gladd.noop"}', headers=headers)
        assert bare.status_code == 201, bare.text
    assert admin.request("POST", "/reload").json()["outcome"] == "unchanged"
    assert admin.request("GET", "/metrics").text == "gladd_up 1\n"


# -- cancel and retry refuse what the state does not allow --------------------------------


def _task_in(admin: Admin, state: str) -> int:
    """A fresh task of kind ``test.STATE`` brought to ``state`` through the store."""
    store = admin.store
    kind = f"test.{state}.{secrets.token_hex(3)}"
    task_id: int = admin.call(store.enqueue, NewTask(kind=kind), now=NOW).id
    if state == "cancelled":
        admin.call(store.cancel, task_id, now=NOW)
    elif state != "pending":
        claimed = admin.call(store.claim, worker="w1", limit=1, now=NOW, kinds=[kind])
        token = claimed[0].token
        if state == "succeeded":
            admin.call(store.finish, [Succeeded(id=task_id, token=token)], now=NOW)
        elif state == "dead":
            error = TaskError(type="Boom", message="boom", attempt=1, at=NOW)
            failed = Failed(id=task_id, token=token, error=error, retry_at=None)
            admin.call(store.finish, [failed], now=NOW)
    return task_id


@pytest.mark.parametrize("state", ["succeeded", "dead", "cancelled"])
def test_cancelling_a_finished_task_is_a_409_that_changes_nothing(admin: Admin, state: str) -> None:
    task_id = _task_in(admin, state)
    before = admin.request("GET", f"/tasks/{task_id}").json()
    answer = admin.request("POST", f"/tasks/{task_id}/cancel")
    assert answer.status_code == 409
    assert answer.json() == {
        "error": f"task {task_id} is {state}; only pending or running tasks can be cancelled"
    }
    assert admin.request("GET", f"/tasks/{task_id}").json() == before


@pytest.mark.parametrize("state", ["succeeded", "running", "pending"])
def test_retrying_an_unfinished_or_succeeded_task_is_a_409(admin: Admin, state: str) -> None:
    task_id = _task_in(admin, state)
    before = admin.request("GET", f"/tasks/{task_id}").json()
    answer = admin.request("POST", f"/tasks/{task_id}/retry")
    assert answer.status_code == 409
    assert answer.json() == {
        "error": f"task {task_id} is {state}; only dead or cancelled tasks can be retried"
    }
    assert admin.request("GET", f"/tasks/{task_id}").json() == before


def test_retrying_into_a_unique_key_another_task_holds_is_a_409(admin: Admin) -> None:
    store = admin.store
    key = f"report-{secrets.token_hex(3)}"
    old: int = admin.call(store.enqueue, NewTask(kind="test.u", unique_key=key), now=NOW).id
    admin.call(store.cancel, old, now=NOW)
    new: int = admin.call(store.enqueue, NewTask(kind="test.u", unique_key=key), now=NOW).id
    answer = admin.request("POST", f"/tasks/{old}/retry")
    assert answer.status_code == 409
    assert answer.json() == {
        "error": f"task {old} cannot be retried: task {new} with the same unique_key {key!r} "
        "is still unfinished"
    }
    assert admin.request("GET", f"/tasks/{old}").json()["state"] == "cancelled"


def test_what_cancel_and_retry_allow_still_works(admin: Admin) -> None:
    pending, running, dead = (_task_in(admin, s) for s in ("pending", "running", "dead"))
    assert admin.request("POST", f"/tasks/{pending}/cancel").json()["state"] == "cancelled"
    asked = admin.request("POST", f"/tasks/{running}/cancel").json()
    assert (asked["state"], asked["cancel_requested"]) == ("running", True)
    again = admin.request("POST", f"/tasks/{running}/cancel")  # still being cancelled: fine
    assert again.status_code == 200
    assert admin.request("POST", f"/tasks/{dead}/retry").json()["state"] == "pending"
    assert admin.request("POST", f"/tasks/{pending}/retry").json()["state"] == "pending"


# -- rows already stored ---------------------------------------------------------------------


def test_a_stored_lone_surrogate_no_longer_breaks_listing_or_showing(
    admin: Admin, tmp_path: Path
) -> None:
    """Rows written before such input was refused (or by plain SQL) are served back."""
    if admin.backend == "postgresql":
        # PostgreSQL cannot hold one at all: jsonb refuses the escape, so no row can exist.
        async def insert() -> None:
            conn = await asyncpg.connect(admin.url)
            try:
                await conn.execute("SELECT $1::jsonb", '{"x": "\\udfff"}')
            finally:
                await conn.close()

        with pytest.raises(asyncpg.PostgresError, match="surrogate"):
            admin.call(insert)
        return
    task_id = _task_in(admin, "pending")
    with sqlite3.connect(admin.url) as db:  # what an older gladd stored: valid JSON text
        db.execute(
            "UPDATE gladd_tasks SET payload = ?, result = ? WHERE id = ?",
            ('{"x":"\\udfff"}', '{"y":"\\ud800"}', task_id),
        )
    db.close()
    shown = admin.request("GET", f"/tasks/{task_id}")
    assert shown.status_code == 200
    assert b'"payload":{"x":"\\udfff"}' in shown.content  # escaped, as JSON allows
    assert shown.json()["payload"] == {"x": "\udfff"}  # nothing lost
    listed = admin.request("GET", "/tasks?limit=1000")
    assert listed.status_code == 200
    assert task_id in [t["id"] for t in listed.json()["tasks"]]
    assert admin.request("POST", f"/tasks/{task_id}/cancel").status_code == 200
    _assert_answered(admin, listed)


def test_rows_plain_sql_wrote_that_do_not_decode_are_listed_and_shown(admin: Admin) -> None:
    """The schema invites plain INSERTs; what they write cannot break every read."""
    deep = "[" * 5000 + "]" * 5000  # valid JSON, too deep for Python's decoder
    if admin.backend == "sqlite":
        with sqlite3.connect(admin.url) as db:
            rows = [
                db.execute(sql, args).lastrowid
                for sql, args in (
                    ("INSERT INTO gladd_tasks (kind, payload) VALUES (?, ?)", ("x.y", "not json")),
                    ("INSERT INTO gladd_tasks (kind, payload) VALUES (?, ?)", ("x.y", deep)),
                    ("INSERT INTO gladd_tasks (kind) VALUES (CAST(X'FF61' AS TEXT))", ()),
                )
            ]
        db.close()
    else:

        async def insert() -> list[int]:
            conn = await asyncpg.connect(admin.url)
            try:
                sql = "INSERT INTO gladd_tasks (kind, payload) VALUES ($1, $2::jsonb) RETURNING id"
                return [await conn.fetchval(sql, "x.y", deep)]
            finally:
                await conn.close()

        rows = admin.call(insert)
    listed = admin.request("GET", "/tasks?limit=1000")
    _assert_answered(admin, listed)
    assert set(rows) <= {t["id"] for t in listed.json()["tasks"]}
    for task_id in rows:
        shown = admin.request("GET", f"/tasks/{task_id}")
        _assert_answered(admin, shown)
        assert shown.status_code == 200
    first = admin.request("GET", f"/tasks/{rows[0]}").json()
    if admin.backend == "sqlite":
        assert first["payload"] == "not json"  # as stored, not a 500
        assert admin.request("GET", f"/tasks/{rows[2]}").json()["kind"] == "\ufffda"
    else:
        assert first["payload"] == deep
    for task_id in rows:  # and they can be cancelled like any other
        assert admin.request("POST", f"/tasks/{task_id}/cancel").status_code == 200


# -- the property: whatever arrives, a 4xx at worst -------------------------------------------

SURROGATES = st.sampled_from(["\udfff", "\ud800", "a\udc80b", "\x00", "a\x00", "\u2028", "é"])
TEXT = st.one_of(st.text(max_size=20), SURROGATES)
BIG_INTS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 10**30, 2**31, -(2**31) - 1]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), BIG_INTS, st.floats(allow_nan=False, allow_infinity=False), TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
DURATIONS = st.one_of(
    st.sampled_from(["0s", "30s", "1h30m", "-1s", "99999999999d", "3651d", "1e5s", "", "5"]),
    st.from_regex(r"[0-9]{1,30}(ms|s|m|h|d)", fullmatch=True),
    JSON_VALUES,
)
KINDS = st.one_of(
    st.sampled_from(["gladd.noop", "gladd.sleep", "http.request", "nope"]), JSON_VALUES
)
HTTP_PAYLOADS = st.fixed_dictionaries(
    {"url": st.sampled_from(["http://127.0.0.1:9/x", "http://localhost/", "ftp://x", "x"])},
    optional={
        "service": st.one_of(st.sampled_from(["hooks", "billing"]), JSON_VALUES),
        "method": st.one_of(st.sampled_from(["get", "POST", "BREW"]), JSON_VALUES),
        "expect": st.one_of(st.lists(BIG_INTS, max_size=3), JSON_VALUES),
        "headers": JSON_VALUES,
    },
)
ENQUEUES = st.fixed_dictionaries(
    {"kind": KINDS},
    optional={
        "payload": st.one_of(JSON_VALUES, HTTP_PAYLOADS, st.just({"seconds": 0.5})),
        "delay": DURATIONS,
        "priority": st.one_of(BIG_INTS, JSON_VALUES),
        "unique_key": TEXT,
        "timeout": DURATIONS,
        "colour": JSON_VALUES,
    },
)


def _deep(levels: int, opener: str) -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return ('{"a":' * levels + "1" + "}" * levels).encode()
    return (opener * levels + closer * levels).encode()


def _encode(value: Any) -> bytes:
    # ensure_ascii: surrogates travel as \\u escapes, as a hostile client would send them.
    return json.dumps(value).encode()


BODIES = st.one_of(
    st.none(),
    st.binary(max_size=200),
    ENQUEUES.map(_encode),
    st.lists(st.one_of(ENQUEUES, JSON_VALUES), max_size=4).map(_encode),  # a batch
    JSON_VALUES.map(_encode),
    st.builds(_deep, st.integers(1, 6000), st.sampled_from(["[", "{"])),
    st.builds(
        lambda n, o: b'{"kind": "gladd.noop", "payload": ' + _deep(n, o) + b"}",
        st.integers(90, 1500),
        st.sampled_from(["[", "{"]),
    ),
    st.sampled_from([b"NaN", b"-Infinity", b'{"kind": "gladd.noop", "priority": 1e999}', b"{"]),
)
IDS = st.one_of(
    BIG_INTS.map(str),
    st.integers(1, 12).map(str),  # the tasks this run made
    st.sampled_from(["-1", "0", "abc", "1.5", "1e3", "+1", "%00", "\u0661", "²", " 1", "0x10"]),
    st.text(min_size=1, max_size=8).filter(lambda s: "/" not in s),
)
PATHS = st.one_of(
    st.sampled_from(
        ["/health", "/health/live", "/health/ready", "/metrics", "/reload", "/tasks", "/"]
    ),
    IDS.map(lambda i: f"/tasks/{i}"),
    st.builds(lambda i, v: f"/tasks/{i}/{v}", IDS, st.sampled_from(["cancel", "retry", "x"])),
    st.text(max_size=20).map(lambda s: "/" + s),
)
QUERY = st.dictionaries(
    st.sampled_from(["limit", "state", "kind", "offset", "x"]),
    st.one_of(
        BIG_INTS.map(str),
        st.sampled_from(["pending", "dead", "", "100", "-5", "²", "1000", "1001"]),
        st.text(max_size=10),
    ),
    max_size=3,
)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.one_of(
            st.sampled_from(
                [
                    "application/json",
                    "text/plain",
                    "json",
                    "application/problem+json; charset=utf-8",
                    "multipart/form-data; boundary=x",
                    "application/x-www-form-urlencoded",
                    "",
                ]
            ),
            HEADER_TEXT,
        ),
        "authorization": HEADER_TEXT,
        "accept": HEADER_TEXT,
        "content-length": st.sampled_from(["0", "abc", "²", "99999999999999999999", "-1"]),
    },
)
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(method=METHODS, path=PATHS, query=QUERY, headers=HEADERS, body=BODIES)
def test_no_request_to_any_route_gets_a_5xx(
    admin: Admin,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes | None,
) -> None:
    raw_headers = [(name, value.encode()) for name, value in headers.items()]  # bytes as sent
    options: dict[str, Any] = {"params": query, "headers": raw_headers}
    if body is not None:
        options["content"] = body
    url = quote(path, safe="/")
    try:
        response = admin.request(method, url, **options)
    except httpx.LocalProtocolError:
        return  # httpx itself refused to send it (e.g. a Content-Length it cannot honour)
    _assert_answered(admin, response)
    if method == "HEAD" or not response.content:
        return
    if response.headers.get("content-type", "").endswith("json"):
        json.loads(response.content)  # always valid JSON, even for stored oddities


@pytest.mark.anyio
async def test_a_plugin_check_that_crashes_refuses_the_task_with_422_naming_the_plugin(
    tmp_path: Path,
) -> None:
    """A bug in a plugin's enqueue check is the plugin's, not the client's: no 500, nothing
    stored, and the message says whose bug it is (the traceback goes to the log)."""
    from gladd.executor.kinds import KindRegistry, RegisteredKind, builtin_kinds  # noqa: PLC0415

    def crashing(payload: object, policies: object) -> None:
        raise KeyError("region")

    kinds = KindRegistry(builtin_kinds())
    kinds.register(
        RegisteredKind(
            name="crm.sync", handler=lambda ctx, p: None, plugin="crm", runnable=crashing
        )
    )
    store = SQLiteStore(tmp_path / "gladd.db")
    await store.open()
    logged: list[str] = []
    sink = logger.add(logged.append, level="ERROR", format="{message}")
    try:
        service = TaskService(store, kinds, lambda: POLICIES)
        app = create_app(HealthBoard(version="t", service_id="n"), tasks=service, token=None)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://127.0.0.1"
        ) as client:
            answer = await client.post("/tasks", json={"kind": "crm.sync"})
        assert answer.status_code == 422
        assert answer.json()["error"] == (
            "crm.sync task refused: plugin crm's enqueue check failed (KeyError: 'region'); "
            "nothing was stored. This is a bug in the plugin (its check must raise ValueError "
            "to refuse a task); its log has the traceback"
        )
        assert await store.list() == []
    finally:
        logger.remove(sink)
        await store.close()
    assert logged[0].startswith("plugin crm: the enqueue check of kind crm.sync raised KeyError")


# -- batches: POST /tasks with an array ---------------------------------------------------


def _all_tasks(admin: Admin) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = admin.request("GET", "/tasks?limit=1000").json()["tasks"]
    return listed


def test_a_batch_is_stored_in_item_order_and_answers_each_id(admin: Admin) -> None:
    key = f"batch-{secrets.token_hex(3)}"
    items = [
        {"kind": "gladd.noop", "unique_key": key},
        {"kind": "gladd.sleep", "payload": {"seconds": 1}, "delay": "30s", "priority": 3},
        {"kind": "gladd.noop", "unique_key": key, "timeout": "1m"},
    ]
    made = admin.request("POST", "/tasks", json=items)
    assert made.status_code == 201, made.text
    answered = made.json()["tasks"]
    assert [t["created"] for t in answered] == [True, True, False]
    assert answered[2]["id"] == answered[0]["id"]
    sleep = admin.request("GET", f"/tasks/{answered[1]['id']}").json()
    assert (sleep["kind"], sleep["payload"], sleep["priority"]) == (
        "gladd.sleep",
        {"seconds": 1},
        3,
    )

    again = admin.request("POST", "/tasks", json=[items[0]])
    assert again.status_code == 200  # every item matched an unfinished task's key
    assert again.json() == {"tasks": [{"id": answered[0]["id"], "created": False}]}
    empty = admin.request("POST", "/tasks", json=[])
    assert (empty.status_code, empty.json()) == (201, {"tasks": []})
    _assert_answered(admin, made)


def test_a_refused_batch_is_a_422_listing_every_item_and_stores_nothing(admin: Admin) -> None:
    before = _all_tasks(admin)
    items: list[Any] = [
        {"kind": "gladd.noop"},
        {"kind": "nope"},
        {"kind": "gladd.sleep", "payload": {"seconds": -1}},
        {"kind": "gladd.noop", "priority": True},
        {"kind": "gladd.noop", "colour": "red"},
        7,
        {"kind": "gladd.noop", "delay": "soon"},
        {"kind": "gladd.noop", "payload": {"x": "\udfff"}},
    ]
    answer = admin.request("POST", "/tasks", content=json.dumps(items).encode())
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"].startswith("batch of 8 refused, nothing stored: 7 item(s) refused\n")
    items = body["items"]
    assert [(i["index"], i["field"]) for i in items] == [
        (1, "kind"),
        (2, "payload"),
        (3, "priority"),
        (4, "colour"),
        (5, ""),
        (6, "delay"),
        (7, "payload"),
    ]
    assert items[0]["message"].startswith("unknown task kind 'nope' (known kinds: gladd.noop")
    assert items[1]["message"].startswith("payload for gladd.sleep is invalid: seconds")
    assert items[3]["message"] == "Extra inputs are not permitted"
    assert items[4]["message"] == "must be an object"
    assert items[6]["message"].startswith("payload for gladd.noop refused: payload.x: contains")
    assert _all_tasks(admin) == before
    _assert_answered(admin, answer)


def test_a_batch_over_its_limits_is_a_413_naming_the_limit(admin: Admin) -> None:
    before = _all_tasks(admin)
    many = admin.request("POST", "/tasks", json=[{"kind": "gladd.noop"}] * (MAX_BATCH + 1))
    assert many.status_code == 413
    assert many.json() == {
        "error": f"a batch may hold at most {MAX_BATCH} tasks (got {MAX_BATCH + 1}): split it; "
        "nothing was stored"
    }
    huge = b'[{"kind": "gladd.noop", "payload": "' + b"x" * MAX_BATCH_BODY + b'"}]'
    too_big = admin.request("POST", "/tasks", content=huge)
    assert too_big.status_code == 413
    assert too_big.json() == {
        "error": f"request body over {MAX_BATCH_BODY} bytes (the limit of a batch, an array "
        "of tasks)"
    }
    # Streamed without a Content-Length, the limit holds as the body comes in.
    streamed = admin.request("POST", "/tasks", content=_chunked(huge, 1 << 20))
    assert streamed.status_code == 413
    assert _all_tasks(admin) == before


async def _chunked(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_batch_may_be_over_an_objects_limit_and_an_object_still_may_not(admin: Admin) -> None:
    blob = "x" * (600 * 1024)
    pair = [{"kind": "gladd.noop", "payload": {"blob": blob}}] * 2  # 1.2 MiB
    made = admin.request("POST", "/tasks", json=pair)
    assert made.status_code == 201, made.text[:300]
    single = {"kind": "gladd.noop", "payload": {"blob": blob * 2}}
    for content in (json.dumps(single).encode(), b"  \n" + json.dumps(single).encode()):
        answer = admin.request("POST", "/tasks", content=content)
        assert answer.status_code == 413
        assert answer.json() == {"error": f"request body over {MAX_BODY} bytes"}


def test_post_tasks_takes_delay_and_timeout_as_seconds_or_text(admin: Admin) -> None:
    by_number = admin.request(
        "POST", "/tasks", json={"kind": "gladd.noop", "delay": 90, "timeout": 2}
    )
    by_text = admin.request(
        "POST", "/tasks", json={"kind": "gladd.noop", "delay": "1m30s", "timeout": "2s"}
    )
    assert (by_number.status_code, by_text.status_code) == (201, 201)
    shown = [admin.request("GET", f"/tasks/{r.json()['id']}").json() for r in (by_number, by_text)]
    assert shown[0]["timeout"] == shown[1]["timeout"] == 2.0
    refused = admin.request("POST", "/tasks", json={"kind": "gladd.noop", "delay": True})
    assert refused.status_code == 400
    assert "delay" in refused.json()["error"]


def test_wait_answers_the_finished_task_or_a_408_with_the_task_as_it_stands(
    admin: Admin,
) -> None:
    done = _task_in(admin, "dead")
    answer = admin.request("GET", f"/tasks/{done}/wait", params={"timeout": "0"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "dead"
    assert answer.json()["errors"][-1]["message"] == "boom"
    running = _task_in(admin, "running")
    late = admin.request("GET", f"/tasks/{running}/wait", params={"timeout": "200ms"})
    assert late.status_code == 408, late.text
    assert f"task {running} " in late.json()["error"]
    assert late.json()["task"]["state"] == "running"
    assert admin.request("GET", "/tasks/987654/wait").status_code == 404


@pytest.mark.parametrize(
    ("timeout", "says"),
    [("61", "at most 60s"), ("2m", "at most 60s"), ("soon", "is not a duration"), ("-1", "")],
)
def test_a_wait_timeout_out_of_range_or_not_a_duration_is_a_400(
    admin: Admin, timeout: str, says: str
) -> None:
    task_id = _task_in(admin, "pending")
    answer = admin.request("GET", f"/tasks/{task_id}/wait", params={"timeout": timeout})
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
