"""Services cooling down: which may not be called from this node, and until when.

A service that answers 429 or 503 with ``Retry-After`` (RFC 9110 §10.2.3, RFC 6585 §4)
is telling every client to stay away for a while. Retrying into that wall from each task
wastes attempts and prolongs the overload, so the transport records a cooldown here and
every request to the service fails at once with
:class:`~gladd.errors.ServiceCooldown` until it ends — no request is sent.

:class:`Cooldowns` is plain state over an injectable wall clock (``now``): no event loop
needed to read or change it. Hooks in :attr:`Cooldowns.on_begin` hear of each cooldown that
begins or is extended (the daemon stores a cluster-wide pause with one, so other nodes stop
claiming the service's tasks too); a synchronous hook runs inside :meth:`~Cooldowns.begin`,
an async one in :meth:`Cooldowns.run`, the service the daemon starts with
``await tg.start(cooldowns.run)``, so a slow store write never holds up a request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from inspect import isawaitable

import anyio
from anyio.abc import TaskStatus
from loguru import logger

CooldownHook = Callable[[str, datetime, str], Awaitable[None] | None]
"""Called with (service, until, reason) when a cooldown begins or is extended."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cooldown:
    """One service's cooldown: nothing is sent to it before ``until``."""

    service: str
    until: datetime
    reason: str
    status: int | None = None


class Cooldowns:
    """The cooldowns of this node, by service."""

    __slots__ = ("_by_service", "_pending", "_wake", "now", "on_begin")

    def __init__(self, *, now: Callable[[], datetime] = utc_now) -> None:
        self.now = now
        """The wall clock (timezone-aware); tests pass their own."""
        self.on_begin: list[CooldownHook] = []
        self._by_service: dict[str, Cooldown] = {}
        self._pending: deque[Awaitable[None]] = deque()
        self._wake: anyio.Event | None = None

    def begin(
        self,
        service: str,
        until: datetime,
        reason: str,
        *,
        status: int | None = None,
        notify: bool = True,
    ) -> bool:
        """Cool ``service`` down until ``until``; True if that began a cooldown or extended
        the current one (only then are the :attr:`on_begin` hooks told, unless ``notify``
        is False: pass False for a cooldown learnt from another node, which that node has
        already announced). An earlier ``until`` than the current one changes nothing."""
        if until.tzinfo is None:
            raise ValueError(f"cooldown of {service!r}: until must be timezone-aware")
        until = until.astimezone(UTC)
        current = self.get(service)
        if current is not None and current.until >= until:
            return False
        self._by_service[service] = Cooldown(
            service=service, until=until, reason=reason, status=status
        )
        if notify:
            self._notify(service, until, reason)
        return True

    def get(self, service: str, now: datetime | None = None) -> Cooldown | None:
        """The cooldown of ``service`` now in force, or None (an ended one is forgotten)."""
        found = self._by_service.get(service)
        if found is None:
            return None
        if found.until <= (self.now() if now is None else now):
            del self._by_service[service]
            return None
        return found

    def until(self, service: str, now: datetime | None = None) -> datetime | None:
        """When the cooldown of ``service`` ends, or None when it is not cooling down."""
        found = self.get(service, now)
        return None if found is None else found.until

    def end(self, service: str) -> bool:
        """End the cooldown of ``service`` now (an operator's resume); True if it had one."""
        return self._by_service.pop(service, None) is not None

    def active(self, now: datetime | None = None) -> dict[str, Cooldown]:
        """Every cooldown in force, by service."""
        moment = self.now() if now is None else now
        return {s: c for s in list(self._by_service) if (c := self.get(s, moment)) is not None}

    # -- the hooks ------------------------------------------------------------------------

    def _notify(self, service: str, until: datetime, reason: str) -> None:
        for hook in list(self.on_begin):
            try:
                result = hook(service, until, reason)
            except Exception as exc:  # a broken hook must not fail the request
                _hook_failed(hook, exc)
                continue
            if isawaitable(result):
                self._pending.append(result)
                if self._wake is not None:
                    self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Await the async hooks' work as cooldowns begin, until cancelled."""
        self._wake = anyio.Event()
        task_status.started()
        try:
            while True:
                while self._pending:
                    await _await_hook(self._pending.popleft())
                await self._wake.wait()
                self._wake = anyio.Event()
        finally:
            self._wake = None
            for unawaited in self._pending:  # avoid "coroutine was never awaited"
                close = getattr(unawaited, "close", None)
                if close is not None:
                    close()
            self._pending.clear()


async def _await_hook(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception as exc:
        _hook_failed(work, exc)


def _hook_failed(hook: object, exc: Exception) -> None:
    name = getattr(hook, "__qualname__", None) or type(hook).__name__
    logger.error("cooldown hook {} failed: {}: {}", name, type(exc).__name__, exc)
