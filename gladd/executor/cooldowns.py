"""A service's cooldown, shared by every node through the store.

When this node's transport begins a cooldown (a 429 or 503 with ``Retry-After``), the
bridge stores it as the pause ``cooldown:SERVICE`` until its end, so every node's producer
stops claiming the service's kinds (:mod:`gladd.executor.flow`). When the pauses read from
the store carry another node's cooldown, it is begun here too (not announced again), so
this node's running tasks send nothing to the service either; when an operator resumes
one (``gladd resume cooldown:SERVICE``), it ends here as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from loguru import logger

from gladd.errors import StoreError
from gladd.resilience.cooldown import Cooldowns
from gladd.store import Store
from gladd.store.gates import Pause

PREFIX = "cooldown:"


@dataclass(slots=True, kw_only=True, eq=False)
class CooldownBridge:
    store: Store
    cooldowns: Cooldowns
    node: str
    now: Callable[[], datetime]
    _stored: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.cooldowns.on_begin.append(self.announce)

    async def announce(self, service: str, until: datetime, reason: str) -> None:
        """Store this node's cooldown of ``service``: every node holds its kinds back."""
        pause = Pause(
            target=f"{PREFIX}{service}",
            reason=reason,
            until=until,
            by=f"cooldown:{self.node}",
            created_at=self.now(),
        )
        try:
            await self.store.pause(pause)
        except StoreError as exc:
            logger.warning(
                "service {} cools down until {} on this node only: storing it failed: {}",
                service,
                until.isoformat(),
                exc,
            )
            return
        logger.info(
            "service {} cools down until {} on every node: {}", service, until.isoformat(), reason
        )

    def seen(self, pauses: list[Pause]) -> None:
        """The pauses as last read from the store: begin the cooldowns they carry, end the
        ones an operator resumed."""
        stored: dict[str, Pause] = {
            p.target.removeprefix(PREFIX): p for p in pauses if p.target.startswith(PREFIX)
        }
        for service, pause in stored.items():
            if pause.until is not None:
                self.cooldowns.begin(service, pause.until, pause.reason, notify=False)
        for service in self._stored - stored.keys():
            if self.cooldowns.end(service):
                logger.info("service {}: its cooldown was ended (resumed)", service)
        self._stored = set(stored)
