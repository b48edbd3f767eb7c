"""The completer: outcomes go to an outbox and are written to the store in batches.

Under load many completions share one round trip; when idle, the first completion is
written at once. A failed write keeps its batch and is retried after the store backoff
(:mod:`gladd.resilience.pacing`: ``database.retry``'s schedule, jittered, at most a
heartbeat), never at a fixed rhythm a fleet would share; meanwhile heartbeats keep the
tasks this worker's.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.executor.ledger import Ledger
from gladd.policies import Policies
from gladd.resilience.backoff import Backoff
from gladd.resilience.clock import Clock
from gladd.resilience.pacing import Pacer, capped, store_backoff
from gladd.store import Failed, Outcome, Released, Store, Succeeded


@dataclass(slots=True, kw_only=True, eq=False)
class Completer:
    """``await tg.start(completer.run)``; :meth:`record` outcomes; :meth:`flush_everything`
    before leaving."""

    store: Store
    policies: Callable[[], Policies]
    ledger: Ledger
    now: Callable[[], datetime]
    clock: Clock
    rng: random.Random
    store_health: Callable[[StoreError | None], None]
    written: Callable[[Sequence[int]], Awaitable[None]] | None = None
    """Told the ids of each batch stored (the producer: a gated task's room opened)."""
    settle: Callable[[Sequence[int]], Awaitable[None]] | None = None
    """Told the ids of each batch before it is written (their last progress goes first)."""
    pacer: Pacer = field(init=False)
    succeeded: int = field(default=0, init=False)
    failed: int = field(default=0, init=False)
    dead: int = field(default=0, init=False)
    released: int = field(default=0, init=False)
    cancelled: int = field(default=0, init=False)
    fenced: int = field(default=0, init=False)
    _outbox: list[Outcome] = field(default_factory=list, init=False)
    _outbox_ready: anyio.Event = field(default_factory=anyio.Event, init=False)
    _writing: anyio.Event | None = field(default=None, init=False)  # set when a write ends

    def __post_init__(self) -> None:
        self.pacer = Pacer(self._backoff, self.rng)

    def record(self, outcome: Outcome) -> None:
        """Owe ``outcome`` to the store; the next flush writes it."""
        self._outbox.append(outcome)
        self._outbox_ready.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Write what the outbox holds in one batch; on failure keep it and back off."""
        batch, self._outbox = self._outbox, []
        if not batch:
            return
        self._writing = writing = anyio.Event()
        try:
            if self.settle is not None:
                await self.settle([outcome.id for outcome in batch])
            accepted = await self.store.finish(batch, now=self.now())
        except StoreError as exc:
            writing.set()
            # Keep them: the next flush retries, and heartbeats keep the tasks ours meanwhile.
            self.store_health(exc)
            logger.debug("writing {} task outcomes failed, will retry: {}", len(batch), exc)
            self._outbox = batch + self._outbox
            await self.clock.sleep(self.pacer.next_delay())
            self._outbox_ready.set()
            return
        finally:
            writing.set()  # also when cancelled: nobody may wait for it forever
        self.pacer.succeeded()
        for outcome, ok in zip(batch, accepted, strict=True):
            self.ledger.written(outcome.id)
            self._count(outcome, ok)
        if self.written is not None:
            await self.written([outcome.id for outcome in batch])

    async def flush_everything(self) -> None:
        """Write what is left, trying for at most a heartbeat (the node is leaving). A
        batch the running loop is writing now is waited for first: it is out of the outbox,
        and cancelling that loop mid-write would leave its tasks to a rescue (run twice)."""
        with anyio.move_on_after(self.policies().executor.heartbeat):
            if self._writing is not None:
                await self._writing.wait()
            while self._outbox:
                await self.flush()

    def _backoff(self) -> Backoff:
        # Never longer than a heartbeat: heartbeats keep the tasks ours while we wait, and
        # once the store answers again the outcomes should not sit here much longer.
        policies = self.policies()
        return capped(store_backoff(policies), policies.executor.heartbeat)

    def _count(self, outcome: Outcome, ok: bool) -> None:
        if not ok:
            self.fenced += 1
            logger.warning(
                "task {}: outcome discarded, another worker owns it now (fencing token {})",
                outcome.id,
                outcome.token,
            )
        elif isinstance(outcome, Succeeded):
            self.succeeded += 1
        elif isinstance(outcome, Failed):
            self.failed += 1
            self.dead += outcome.retry_at is None
        elif isinstance(outcome, Released):
            self.released += 1
        else:
            self.cancelled += 1
