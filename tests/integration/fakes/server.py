"""Serving a fake API on 127.0.0.1, and the switch that makes it fail on purpose.

Each fake is a Starlette app speaking one real API's shape (paths, auth headers, status
codes, error bodies). :class:`Faults` sits in front of it: the test queues what the next
requests meet (a 503, a 429 with ``Retry-After``, a hang) or sets one failure for all of
them, and reads back what the server saw.
"""

from __future__ import annotations

import asyncio
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from urllib.parse import parse_qs

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Fault = int | str
"""A status to answer with, ``"hang"`` (no answer for ``hang_for`` seconds) or ``"ok"``."""

ErrorBody = Callable[[int], Response]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Faults:
    """What the next requests meet, and what the server has seen."""

    script: list[Fault] = field(default_factory=list)
    always: Fault | None = None
    retry_after: str = "1"
    hang_for: float = 3.0
    seen: list[Seen] = field(default_factory=list)

    def reset(self) -> None:
        self.script.clear()
        self.always = None
        self.retry_after = "1"
        self.seen.clear()

    def next(self) -> Fault:
        if self.script:
            return self.script.pop(0)
        return self.always if self.always is not None else "ok"

    def count(self, path: str | None = None) -> int:
        return sum(1 for s in self.seen if path is None or s.path == path)


class FaultyApp:
    """Records every request, then applies the next fault or hands it to ``app``."""

    def __init__(self, app: ASGIApp, faults: Faults, error: ErrorBody) -> None:
        self.app = app
        self.faults = faults
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        self.faults.seen.append(Seen(scope["method"], scope["path"], dict(request.headers), body))

        async def replay() -> dict[str, object]:
            return {"type": "http.request", "body": body, "more_body": False}

        fault = self.faults.next()
        if fault == "hang":
            await asyncio.sleep(self.faults.hang_for)
            fault = "ok"
        if isinstance(fault, int):
            response = self.error(fault)
            if fault in (429, 503) and "retry-after" not in response.headers:
                response.headers["Retry-After"] = self.faults.retry_after
            await response(scope, replay, send)
            return
        await self.app(scope, replay, send)


async def form(request: Request) -> dict[str, str | bytes]:
    """The form fields of a request, urlencoded or multipart (file parts as bytes)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str | bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = payload if part.get_filename() else payload.decode()
    return fields


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port in a background thread; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            threading.Event().wait(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
