"""The one thread that runs every SQLite call, awaited from the event loop without blocking.

Used by :class:`~gladd.store.sqlite.store.SQLiteStore`: its connection lives on this thread, so
statements run in order and the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

T = TypeVar("T")


class DbThread:
    """One thread that runs callables in order; ``call`` awaits one without blocking.

    The wait is shielded: a cancelled caller still waits for the statement it started
    (a transaction is never abandoned half-way), then sees the cancellation.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.in_flight = 0  # calls running or queued (read by pool_stats)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    async def call(self, fn: Callable[[], T]) -> T:
        self.in_flight += 1
        try:
            return await self._call(fn)
        finally:
            self.in_flight -= 1

    async def _call(self, fn: Callable[[], T]) -> T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return await self._call_any_backend(fn)
        # asyncio: hand the result over with call_soon_threadsafe, about twice as fast.
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

        self._jobs.put(job)
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    async def _call_any_backend(self, fn: Callable[[], T]) -> T:
        token = anyio.lowlevel.current_token()
        done = anyio.Event()
        box: list[tuple[bool, Any]] = []

        def job() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:
                box.append((False, exc))
            anyio.from_thread.run_sync(done.set, token=token)

        self._jobs.put(job)
        with anyio.CancelScope(shield=True):
            await done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def stop(self) -> None:
        # Wait for the jobs before ours without blocking the loop; what is left for join is
        # the thread taking the None and returning. No worker thread of anyio's for the wait:
        # one would outlive a SyncClient's closed loop (it has nothing to join it).
        await self.call(lambda: None)
        self._jobs.put(None)
        self._thread.join()


def _settle(future: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]
