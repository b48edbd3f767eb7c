"""The PostgreSQL store's wake-up connection: one connection outside the pool LISTENs on
``gladd_pauses`` (a pause or resume, or a breaker isolated or reset, any node's); on
``gladd_tasks`` (work may be due) from the start for a store that waits for work (a
daemon), and only from its first wait for a store opened not to (``work=False``: a client
that only enqueues, which so never hears its own inserts' notifications); and once a task
is watched (a waiting client), on ``gladd_task_events`` (task ids whose outcome or progress
was stored).
When it drops it is re-established in the background, and once it is back everything is
announced, for any notification missed meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from loguru import logger

from gladd.store.postgres.errors import map_error

CHANNEL = "gladd_tasks"
PAUSES = "gladd_pauses"  # a pause's target or "breaker:NAME"; readers re-read them all
EVENTS = "gladd_task_events"  # the payload: task ids, comma-separated
LISTENER_RETRY = 1.0  # seconds between attempts to re-establish the listening connection


class NotifyListener:
    """LISTENs on ``CHANNEL`` and ``PAUSES`` for one opening of a store; ``notify`` runs on
    each notification of the first, ``paused`` on each of the second."""

    def __init__(
        self,
        dsn: str,
        *,
        url: str,
        timeout: float,
        notify: Callable[[], None],
        paused: Callable[[], None] = lambda: None,
        events: Callable[[list[int] | None], None] = lambda ids: None,
        work: bool = True,
    ) -> None:
        self._dsn = dsn
        self.url = url  # masked: for messages
        self._timeout = timeout
        self._notify = notify
        self._paused = paused
        self._events = events  # None: any task may have changed
        self._work_wanted = work  # LISTEN on CHANNEL (False: from want_work on)
        self._events_wanted = False
        self._conn: Any = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False

    async def listen(self) -> None:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=max(self._timeout, 1.0))
        except Exception as exc:
            raise map_error("listen", exc, self.url, self._timeout) from exc
        try:
            if self._work_wanted:
                await conn.add_listener(CHANNEL, self._on_notify)
            await conn.add_listener(PAUSES, self._on_paused)
            if self._events_wanted:
                await conn.add_listener(EVENTS, self._on_event)
        except BaseException:
            await _close_quietly(conn)
            raise
        conn.add_termination_listener(self._on_lost)
        self._conn = conn

    @property
    def work_wanted(self) -> bool:
        return self._work_wanted

    async def want_work(self) -> None:
        """LISTEN on ``CHANNEL`` from now on (a client that only enqueues never does)."""
        if not self._work_wanted:
            self._work_wanted = True
            await self._add(CHANNEL, self._on_notify)

    async def want_events(self) -> None:
        """LISTEN on ``EVENTS`` from now on (a daemon that nobody waits on never does)."""
        if not self._events_wanted:
            self._events_wanted = True
            await self._add(EVENTS, self._on_event)

    async def _add(self, channel: str, callback: Callable[..., None]) -> None:
        conn = self._conn
        if conn is None:
            return  # re-establishing: listen() adds it
        try:
            await conn.add_listener(channel, callback)
        except Exception:
            # Lost meanwhile: the termination listener re-establishes it, with the channel.
            logger.debug("PostgreSQL store {}: LISTEN {} failed", self.url, channel)

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)

    def _on_notify(self, *_: object) -> None:
        self._notify()

    def _on_paused(self, *_: object) -> None:
        self._paused()

    def _on_event(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            ids = [int(part) for part in payload.split(",") if part]
        except ValueError:  # someone else's NOTIFY on our channel: anything may have changed
            self._events(None)
            return
        self._events(ids)

    def _on_lost(self, *_: object) -> None:
        self._conn = None
        if self._closed or self._reconnect is not None:
            return
        logger.warning(
            "PostgreSQL store {}: the listening connection was lost; waiting for work by "
            "polling until it is re-established",
            self.url,
        )
        self._reconnect = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        try:
            while not self._closed:
                try:
                    await self.listen()
                except Exception:  # still down: a wait is a timed poll meanwhile
                    await anyio.sleep(LISTENER_RETRY)
                    continue
                if self._closed:  # closed while connecting
                    conn, self._conn = self._conn, None
                    if conn is not None:
                        await _close_quietly(conn)
                    return
                logger.info("PostgreSQL store {}: listening for new tasks again", self.url)
                self._notify()  # tasks may have arrived unheard: let waiters claim
                self._paused()  # and pauses changed: let readers re-read them
                self._events(None)  # and watched tasks: let waiters read them again
                return
        finally:
            self._reconnect = None


async def _close_quietly(conn: Any) -> None:
    try:
        with anyio.move_on_after(1.0):
            await conn.close()
    except Exception:  # it is being discarded either way
        conn.terminate()
    if not conn.is_closed():
        conn.terminate()
