"""The Python API for applications without an event loop: a Django or Flask app, a script.

::

    import gladd

    with gladd.SyncClient("postgresql://app@db/gladd") as client:
        task_id = client.enqueue("http.request", {...}, delay="30s", unique_key="order-17")

A :class:`SyncClient` wraps a :class:`gladd.Client` and runs it on one event loop of its
own, in a background thread started on first use (anyio's blocking portal); every call is
handed to that loop and waited for, so the client may be shared by many threads (a web
app's workers). Code that already runs in an event loop awaits a ``gladd.Client`` instead:
called from there, a ``SyncClient`` raises :class:`~gladd.errors.SyncClientError` rather
than blocking the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from gladd.client import Client
from gladd.errors import SyncClientError
from gladd.executor.kinds import KindRegistry
from gladd.store import Task

T = TypeVar("T")

_OPEN: set[SyncClient] = set()
"""Clients whose loop thread runs: closed at exit if the application did not close them."""
_OPEN_LOCK = threading.Lock()
_exit_hook_registered = False


class SyncClient:
    """A blocking :class:`gladd.Client`: the same arguments, the same answers and errors.

    Use it in a ``with`` block, or keep one for the life of the application and call
    :meth:`close` at its end; the store is opened on first use (or on entering ``with``)."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        policies: Path | None = None,
        kinds: KindRegistry | None = None,
        env_file: Path | None = None,
    ) -> None:
        self._client = Client(database_url, policies=policies, kinds=kinds, env_file=env_file)
        self._lock = threading.Lock()  # opening and closing; calls go through the portal
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._closed = False

    def __enter__(self) -> Self:
        self._open_portal()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        delay: float | str = 0.0,
        priority: int | None = None,
        unique_key: str | None = None,
        timeout: float | str | None = None,
    ) -> int:
        """Store a task; returns its id (the existing task's id when ``unique_key`` matches
        an unfinished one). ``delay`` and ``timeout`` are seconds or text like ``"30s"``.
        Raises TaskRejected for an unknown kind, an invalid payload or duration."""

        async def enqueue() -> int:
            return await self._client.enqueue(
                kind,
                payload,
                delay=delay,
                priority=priority,
                unique_key=unique_key,
                timeout=timeout,
            )

        return self._call(enqueue)

    def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[int]:
        """Store several tasks, each a mapping of :meth:`enqueue`'s arguments (``kind``,
        ``payload``, ``delay``...): their ids in order, as ``gladd.Client.enqueue_many``."""
        batch = list(items)  # read here, in the caller's thread, not on the client's loop
        many = self._client.enqueue_many
        ids: list[int] = self._call(lambda: many(batch))
        return ids

    def get(self, task_id: int) -> Task:
        """The task with ``task_id``; raises UnknownTask when there is none."""
        return self._call(lambda: self._client.get(task_id))

    def wait(
        self,
        task_id: int,
        *,
        timeout: float | str | None = None,
        on_change: Callable[[Task], object] | None = None,
    ) -> Task:
        """Block until the task has finished and return it, as ``gladd.Client.wait``
        (UnknownTask, WaitTimeout, ValueError alike). ``on_change`` runs on the client's
        own loop thread: keep it quick. Other threads' calls go on meanwhile."""
        wait = self._client.wait
        return self._call(lambda: wait(task_id, timeout=timeout, on_change=on_change))

    def close(self) -> None:
        """Close the store and stop the client's event loop thread. Idempotent; any call
        after it raises :class:`~gladd.errors.SyncClientError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            portal, portal_cm = self._portal, self._portal_cm
            self._portal = self._portal_cm = None
        if portal is None or portal_cm is None:
            return
        with _OPEN_LOCK:
            _OPEN.discard(self)
        try:
            portal.call(self._client.__aexit__, None, None, None)
        finally:
            portal_cm.__exit__(None, None, None)

    def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        portal = self._open_portal()
        return portal.call(call)

    def _open_portal(self) -> BlockingPortal:
        """The client's loop, started (and the store opened) on the first call."""
        _refuse_inside_event_loop()
        with self._lock:
            if self._closed:
                raise SyncClientError("this gladd.SyncClient is closed: make a new one")
            if self._portal is not None:
                return self._portal
            portal_cm = start_blocking_portal()
            portal = portal_cm.__enter__()
            try:
                portal.call(self._client.__aenter__)
            except BaseException:
                portal_cm.__exit__(None, None, None)
                raise
            self._portal, self._portal_cm = portal, portal_cm
        _closed_at_exit(self)
        return portal


def _refuse_inside_event_loop() -> None:
    """Blocking this thread would stall the loop running in it (and deadlock on anything
    that loop should do meanwhile), so a call from there is refused before it starts."""
    if _event_loop_running():
        raise SyncClientError(
            "gladd.SyncClient was called inside a running event loop, which it would block: "
            "use gladd.Client there, with await (async with gladd.Client(...) as client: "
            "await client.enqueue(...))"
        )


def _event_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio = sys.modules.get("trio")  # anyio on trio: not an asyncio loop
    if trio is None:
        return False
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def _closed_at_exit(client: SyncClient) -> None:
    """An open client's loop thread would keep the interpreter from exiting: the portal's
    thread belongs to a ThreadPoolExecutor, which Python joins at exit. So open clients
    are closed first, by a hook that runs before that join: ``threading``'s own exit hooks
    run in reverse order, before non-daemon threads are joined (CPython's
    ``threading._shutdown``), and ours is registered after the executor's. Without that
    private hook (another Python), ``atexit``: too late to help, but harmless."""
    global _exit_hook_registered  # noqa: PLW0603
    with _OPEN_LOCK:
        _OPEN.add(client)
        if _exit_hook_registered:
            return
        _exit_hook_registered = True
    register = getattr(threading, "_register_atexit", atexit.register)
    register(_close_open_clients)


def _close_open_clients() -> None:
    with _OPEN_LOCK:
        clients = list(_OPEN)
    for client in clients:
        client.close()
