"""The admin API's server: uvicorn on a socket gladd binds itself.

gladd binds the listening socket itself so that a port in use is a precise start-up
error, and keeps signal handling to itself (uvicorn's own handlers are switched off):
the daemon decides when the server stops.

A client gets :data:`HEADER_TIMEOUT` seconds to send each request's headers (uvicorn bounds
only the idle time between requests, restarted by every byte), so connections that trickle
headers cannot pile up; what the parser cannot read is answered in JSON like every route
(:mod:`gladd.admin.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus
from loguru import logger
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gladd.errors import StartupError

HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a request's headers, from connecting or from the end of the
previous response."""
MAX_HEAD = 16 * 1024
"""Bytes of a request's line and headers."""
MALFORMED = (
    "malformed HTTP request: its request line or headers could not be parsed (or are over 16 KiB)"
)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a :class:`StartupError` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"admin host {host!r} cannot be resolved ({exc.strerror}); "
            "set --admin-host / GLADD_ADMIN_HOST to an address such as 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise StartupError(_bind_message(host, port, exc)) from None
    sock.setblocking(False)
    return sock


def _bind_message(host: str, port: int, exc: OSError) -> str:
    where = f"admin address {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where} is already in use (another gladd?); stop it or choose another port "
            "with --admin-port / GLADD_ADMIN_PORT"
        )
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied; use a port above 1023"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: no such address on this machine; check --admin-host / GLADD_ADMIN_HOST"
    return f"{where} cannot be bound: {exc.strerror}"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon owns SIGTERM/SIGINT/SIGHUP; uvicorn must not take them over.
        yield


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers.

    Armed when the connection opens and when a response completes (unless the next request
    is in already); disarmed once the parser has the whole head of the next request. At the
    deadline a connection still without headers is closed, as is one whose head grows past
    :data:`MAX_HEAD` bytes. The body is read under the app's own size limit. (httptools, not
    h11: a parser in C, where h11's pure Python was a tenth of a request's cost; with it
    ``POST /tasks`` serves ~15 % more, bench/bench_producer.py.)"""

    header_timeout = HEADER_TIMEOUT
    _header_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # received while the timer runs: the head so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._disarm_header_timer()
                self.send_400_response("head too large")

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        next_in = bool(self.pipeline)
        super().on_response_complete()
        if not next_in and not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers are due in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # What the parser cannot read never reaches a route; answer it in JSON all the same.
        body = json.dumps({"error": MALFORMED}).encode()
        head = (
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._head_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def _protocol(header_timeout: float) -> Any:
    if header_timeout == HeaderDeadlineProtocol.header_timeout:
        return HeaderDeadlineProtocol
    return type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout}
    )


class AdminServer:
    """The admin API as a subsystem: ``await tg.start(server.run)``, then ``stop()``."""

    def __init__(
        self, app: ASGIApp, sock: socket.socket, *, header_timeout: float = HEADER_TIMEOUT
    ) -> None:
        self.socket = sock
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
            limit_concurrency=256,
            http=_protocol(header_timeout),
        )
        self._server = _Server(config)

    @property
    def address(self) -> tuple[str, int]:
        host, port, *_ = self.socket.getsockname()
        return str(host), int(port)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve)
            while not self._server.started:
                if self._server.should_exit:
                    raise StartupError("admin API failed to start; see the log above")
                await anyio.sleep(0.005)
            host, port = self.address
            logger.info("admin API listening on http://{}:{}", _url_host(host), port)
            task_status.started()

    async def _serve(self) -> None:
        await self._server.serve(sockets=[self.socket])

    def stop(self) -> None:
        self._server.should_exit = True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
