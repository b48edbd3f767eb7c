"""Attempt timeouts that cost nothing when the awaited work does not suspend.

The guard starts the attempt's coroutine itself (``coro.send(None)``). Most calls that hit
a cache, a pool with a free connection or a fast fake finish right there, and need no timer
at all. Only when the coroutine suspends is a timer armed — a single loop timer on
asyncio (with the stdlib :class:`asyncio.Timeout`'s uncancel bookkeeping), an anyio cancel
scope on any other backend — and the rest of the coroutine is driven through
:func:`_delegate`, which forwards every value, send and throw unchanged. A timeout is
delivered as a real cancellation *into the awaited work*, so its ``finally`` blocks run and
it stops; the guard then reports :class:`Expired`, never a bare ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class Expired(Exception):
    """The timer fired and the awaited work was cancelled."""


@types.coroutine
def _delegate(coro: Coroutine[Any, Any, T], pending: Any) -> Generator[Any, Any, T]:
    """Resume an already-started coroutine to completion, as ``await`` would."""
    send, throw = coro.send, coro.throw
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation or other throw: pass it inside
            try:
                pending = throw(exc)
            except StopIteration as done:
                result: T = done.value
                return result
        else:
            try:
                pending = send(value)
            except StopIteration as done:
                result = done.value
                return result


class _Timer:
    """Cancels ``task`` when fired, and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


async def finish_within(coro: Coroutine[Any, Any, T], pending: Any, seconds: float) -> T:
    """Drive the suspended ``coro`` to the end, cancelling it after ``seconds``."""
    return await within(_delegate(coro, pending), seconds)


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """Await ``awaitable``, cancelling it after ``seconds``; raise :class:`Expired` then.

    On asyncio this is :class:`asyncio.Timeout`'s bookkeeping without its context-manager
    overhead: one loop timer; when it fires the task is cancelled, and the cancellation it
    caused is taken back (``uncancel``) so an outer cancellation still propagates.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return await _within_anyio(awaitable, seconds)
    task = asyncio.current_task(loop)
    if task is None:  # pragma: no cover — awaited outside a task
        return await _within_anyio(awaitable, seconds)
    cancelling = task.cancelling()
    timer = _Timer(task)
    handle = loop.call_at(loop.time() + seconds, timer.fire)
    try:
        result = await awaitable
    except asyncio.CancelledError:
        handle.cancel()
        if timer.fired and task.uncancel() <= cancelling:
            raise Expired from None
        raise
    except BaseException:
        handle.cancel()
        if timer.fired:
            task.uncancel()
        raise
    handle.cancel()
    if timer.fired:  # the work swallowed our cancellation and finished anyway
        task.uncancel()
    return result


async def _within_anyio(awaitable: Awaitable[T], seconds: float) -> T:
    with anyio.move_on_after(seconds) as scope:
        return await awaitable
    if scope.cancelled_caught:
        raise Expired
    raise AssertionError("unreachable: a cancel scope ended without result or cancellation")
