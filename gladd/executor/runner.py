"""The executor: claims tasks, runs their handlers under the policies, records outcomes.

A thin composition of small services sharing one :class:`~gladd.executor.ledger.Ledger`
of the tasks this worker holds, each ``run(*, task_status)`` in one task group:

- :mod:`~gladd.maintenance.rescuer` — the start-up rescue, then dead workers' tasks;
- :mod:`~gladd.executor.heartbeats` — this worker is alive (and cancellations);
- :mod:`~gladd.maintenance.cleaner` — the retention purge;
- :mod:`~gladd.maintenance.scheduler` — each schedule's ticks, once across every node;
- :mod:`~gladd.executor.completer` — outcomes written in batches, backing off on failure;
- :mod:`~gladd.executor.producer` — claims into free slots, one
  :mod:`~gladd.executor.attempt` each; its ``run`` is the executor's lifetime.

Stopping: claiming stops, running handlers get ``executor.shutdown_grace`` to finish, then
are cancelled and *released* (pending again, attempt refunded) — nothing is lost, and
heartbeats go on until the last outcome is written. :meth:`Executor.stop_now` skips the
grace: running handlers are cancelled and released at once. Whatever could not be written
is :attr:`Executor.unreleased`, for the daemon to report.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypedDict

import anyio
from anyio.abc import TaskStatus

from gladd.errors import StoreError
from gladd.executor.attempt import Attempts
from gladd.executor.completer import Completer
from gladd.executor.cooldowns import CooldownBridge
from gladd.executor.decide import scheduled_task
from gladd.executor.flow import FlowStatistics, gates_of, in_force
from gladd.executor.heartbeats import Heartbeats
from gladd.executor.kinds import ContextFactory, KindRegistry, basic_context
from gladd.executor.ledger import Ledger
from gladd.executor.pauses import OnBreakers
from gladd.executor.producer import Producer
from gladd.executor.progress import ProgressWriter
from gladd.executor.statistics import ExecutorStatistics
from gladd.maintenance.cleaner import Cleaner
from gladd.maintenance.rescuer import Rescuer
from gladd.maintenance.scheduler import OnLateness, OnTicks, Scheduler
from gladd.policies import Policies
from gladd.resilience.breaker import Breaker
from gladd.resilience.clock import SYSTEM_CLOCK, Clock
from gladd.resilience.cooldown import Cooldowns
from gladd.store import ScheduleState, Store


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Common(TypedDict):
    """What every service is built on."""

    store: Store
    policies: Callable[[], Policies]
    now: Callable[[], datetime]
    clock: Clock


class _Held(_Common):
    """…and the ledger, for the services that work on the tasks this worker holds."""

    ledger: Ledger


class Executor:
    """One node's worker. ``await tg.start(executor.run)``; ``executor.stop()`` to drain."""

    def __init__(
        self,
        *,
        store: Store,
        kinds: KindRegistry,
        policies: Callable[[], Policies],
        worker_id: str,
        now: Callable[[], datetime] = utcnow,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        rescue_all_at_start: bool = False,
        breaker_for: Callable[[str], Breaker | None] | None = None,
        context_for: ContextFactory = basic_context,
        store_health: Callable[[StoreError | None], None] | None = None,
        observe_task: Callable[[str, str, float], None] | None = None,
        observe_ticks: OnTicks | None = None,
        observe_lateness: OnLateness | None = None,
        cooldowns: Cooldowns | None = None,
        on_breakers: OnBreakers | None = None,
    ) -> None:
        """``now`` is the wall clock the store's times are in; ``clock`` what the services
        wait with (and time attempts by). With ``cooldowns`` (the resilience engine's), a
        service's cooldown begun here is stored for every node, and one begun elsewhere
        reaches this node's transport (:mod:`gladd.executor.cooldowns`). ``on_breakers`` is
        told the breaker overrides the store holds, as the producer reads them."""
        health = store_health or (lambda error: None)
        rng = rng or random.Random()
        self.ledger = Ledger()
        common = _Common(store=store, policies=policies, now=now, clock=clock)
        held = _Held(**common, ledger=self.ledger)
        self.rescuer = Rescuer(**common, rescue_all_at_start=rescue_all_at_start)
        self.cleaner = Cleaner(**common)
        self.scheduler = Scheduler(
            store=store,
            policies=policies,
            now=now,
            make_task=lambda *tick: scheduled_task(policies(), *tick),
            on_ticks=observe_ticks,
            on_lateness=observe_lateness,
        )
        self.cooldowns = cooldowns
        self.bridge = (
            CooldownBridge(store=store, cooldowns=cooldowns, node=worker_id, now=now)
            if cooldowns is not None
            else None
        )
        self.heartbeats = Heartbeats(**held, worker_id=worker_id, store_health=health)
        self.progress = ProgressWriter(store=store, now=now, clock=clock)
        self.completer = Completer(
            **held,
            rng=rng,
            store_health=health,
            written=lambda ids: self.producer.written(ids),  # noqa: PLW0108 - made below
            settle=self.progress.settle,
        )
        self.attempts = Attempts(
            **held,
            kinds=kinds,
            record=self.completer.record,
            rng=rng,
            breaker_for=breaker_for,
            context_for=context_for,
            observe_task=observe_task,
            worker_id=worker_id,
            progress=self.progress,
        )
        self.producer = Producer(
            **held,
            kinds=kinds,
            worker_id=worker_id,
            attempt=self.attempts.run_one,
            store_health=health,
            on_pauses=self.bridge.seen if self.bridge is not None else None,
            on_breakers=on_breakers,
        )

    @property
    def running(self) -> int:
        return len(self.ledger.running)

    @property
    def unreleased(self) -> list[int]:
        """Tasks this worker claimed whose outcome (or release) is not stored (yet)."""
        return sorted(self.ledger.unwritten)

    def statistics(self) -> ExecutorStatistics:
        """A snapshot of this node's counts, for health and metrics."""
        c = self.completer
        return ExecutorStatistics(
            running=len(self.ledger.running),
            claimed=self.producer.claimed,
            succeeded=c.succeeded,
            failed=c.failed,
            dead=c.dead,
            timeouts=self.attempts.timeouts,
            released=c.released,
            cancelled=c.cancelled,
            fenced=c.fenced,
            rescued=self.rescuer.rescued,
            postponed=self.attempts.postponed,
            postponed_by=dict(self.attempts.postponed_by),
        )

    def wake(self) -> None:
        """Re-read the policies now (a reload may have raised the concurrency, or added a
        schedule)."""
        self.producer.wake()
        self.scheduler.wake()

    def flow(self) -> FlowStatistics:
        """Flow control on this node now: gates, what they hold, the pauses in force."""
        p = self.producer
        policies = p.policies()
        return FlowStatistics(
            gates=gates_of(policies),
            usage=dict(p.gate_usage),
            held_tasks=p.gate_held,
            held_kinds=dict(p.held),
            pauses=tuple(in_force(policies, p.pause_cache.pauses, p.now())),
        )

    def schedule_states(self) -> dict[str, ScheduleState]:
        """Where each schedule stood at the scheduler's last look, for health."""
        return self.scheduler.states

    def stop(self) -> None:
        """Stop claiming; running tasks finish within the grace, then are released."""
        self.producer.stop()

    def stop_now(self) -> None:
        """Stop claiming and release the running tasks at once, without the grace."""
        self.producer.stop_now()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as background:
            # In this order: nothing is claimed before the start-up rescue has run and the
            # store has heard this worker's first heartbeat.
            await background.start(self.rescuer.run)
            await background.start(self.heartbeats.run)
            await background.start(self.cleaner.run)
            await background.start(self.scheduler.run)
            await background.start(self.completer.run)
            await background.start(self.progress.run)
            if self.cooldowns is not None:
                await background.start(self.cooldowns.run)
            task_status.started()
            await self.producer.run()  # until stopped and drained
            await self.completer.flush_everything()
            background.cancel_scope.cancel()
        await self.heartbeats.leave()
