"""The admin server on a real socket: clients that send their headers too slowly are cut off."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from gladd.admin.app import create_app
from gladd.admin.server import MALFORMED, AdminServer, bind_socket
from gladd.executor.kinds import KindRegistry, builtin_kinds
from gladd.executor.service import TaskService
from gladd.observe.health import HealthBoard
from gladd.policies import parse_policies
from gladd.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

DEADLINE = 1.0
SLACK = 3.0  # a busy machine may be late to close; never early
REQUEST = b"GET /health/live HTTP/1.1\r\nHost: gladd\r\n\r\n"
POLICIES = parse_policies(b"", source="policies.toml").policies


@asynccontextmanager
async def serving(
    tasks: TaskService | None = None, body_timeout: float = 30.0
) -> AsyncIterator[tuple[str, int]]:
    board = HealthBoard(version="test", service_id="test")
    app = create_app(board, tasks=tasks, body_timeout=body_timeout)
    server = AdminServer(app, bind_socket("127.0.0.1", 0), header_timeout=DEADLINE)
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        try:
            yield server.address
        finally:
            server.stop()


async def _read_until_closed(stream: SocketStream) -> bytes:
    received = b""
    try:
        while True:
            received += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return received


async def _trickle(stream: SocketStream, data: bytes, every: float) -> None:
    try:
        for i in range(len(data)):
            await stream.send(data[i : i + 1])
            await anyio.sleep(every)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def _closed_after(
    address: tuple[str, int], head: bytes, every: float, *, at_once: bytes = b""
) -> tuple[float, bytes]:
    """Seconds until the server closes a connection that sends ``at_once`` and then
    trickles ``head``, and what it sent back."""
    stream = await anyio.connect_tcp(*address)
    async with stream:
        started = anyio.current_time()
        await stream.send(at_once)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_trickle, stream, head, every)
            received = await _read_until_closed(stream)
            tg.cancel_scope.cancel()
        return anyio.current_time() - started, received


async def test_twenty_connections_trickling_headers_are_all_closed_at_the_deadline() -> None:
    slow_head = b"GET /health HTTP/1.1\r\nHost: gladd\r\nX-Slow: " + b"a" * 200
    results: list[tuple[float, bytes]] = []

    async def one() -> None:
        results.append(await _closed_after(address, slow_head, every=0.1))

    async with serving() as address:
        with anyio.fail_after(DEADLINE + SLACK + 5):
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one)
        # The server keeps answering everyone else.
        async with httpx.AsyncClient() as client:
            live = await client.get(f"http://{address[0]}:{address[1]}/health/live")
            assert live.status_code == 200
    assert len(results) == 20
    for seconds, received in results:
        assert DEADLINE - 0.05 <= seconds <= DEADLINE + SLACK  # the trickle would take 20 s
        assert received == b""  # closed without an answer


async def test_a_silent_connection_is_closed_at_the_deadline() -> None:
    async with serving() as address:
        seconds, received = await _closed_after(address, b"", every=0)
    assert DEADLINE - 0.05 <= seconds <= DEADLINE + SLACK
    assert received == b""


async def test_headers_in_time_are_answered_and_the_deadline_rearms_for_the_next() -> None:
    async with serving() as address:
        stream = await anyio.connect_tcp(*address)
        async with stream:
            # In two pieces, well inside the deadline: answered.
            await stream.send(REQUEST[:10])
            await anyio.sleep(DEADLINE / 4)
            await stream.send(REQUEST[10:])
            with anyio.fail_after(5):
                answer = await stream.receive()
            assert answer.startswith(b"HTTP/1.1 200 ")
            # Kept alive, the next request's headers get the same deadline.
            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_trickle, stream, b"GET /health HTTP/1.1\r\nX: " + b"a" * 200, 0.1)
                rest = await _read_until_closed(stream)
                tg.cancel_scope.cancel()
            seconds = anyio.current_time() - started
    assert rest == b""
    assert DEADLINE - 0.05 <= seconds <= DEADLINE + SLACK


async def test_a_body_that_trickles_past_its_deadline_gets_a_408_and_the_connection_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskService(MemoryStore(), KindRegistry(builtin_kinds()), lambda: POLICIES)
    await tasks.store.open()
    head = b"POST /tasks HTTP/1.1\r\nHost: gladd\r\nContent-Length: 200\r\n\r\n"
    async with serving(tasks=tasks, body_timeout=DEADLINE) as address:
        seconds, received = await _closed_after(address, b" " * 200, every=0.05, at_once=head)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in received.lower()
    assert received.endswith(b'{"error":"request body not received within 1s"}')
    assert DEADLINE - 0.05 <= seconds <= DEADLINE + SLACK  # the trickle would take 10 s
    assert await tasks.store.list() == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_gone_half_way_through_its_body_is_no_error_of_ours() -> None:
    tasks = TaskService(MemoryStore(), KindRegistry(builtin_kinds()), lambda: POLICIES)
    await tasks.store.open()
    app = create_app(HealthBoard(version="test", service_id="test"), tasks=tasks)
    arriving = [
        {"type": "http.request", "body": b'{"kind": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return arriving.pop(0) if arriving else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/tasks",
        "raw_path": b"/tasks",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)  # before: ClientDisconnect escaped as a 500 and a traceback
    assert sent[0]["status"] == 400
    assert await tasks.store.list() == []


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: gladd\r\nX: " + b"a" * 20_000,  # and no end in sight
        b"GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    ],
    ids=["request line", "oversized header", "bad content-length"],
)
async def test_what_the_parser_refuses_gets_a_json_400_too(garbage: bytes) -> None:
    async with serving() as address:
        seconds, received = await _closed_after(address, b"", every=0, at_once=garbage)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": MALFORMED}
    assert seconds < DEADLINE  # answered and closed at once, not left to the deadline
