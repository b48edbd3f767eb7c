"""The producer: claims tasks into free slots and starts an attempt for each.

It owns the claiming side of the executor: how many tasks may be claimed now
(:meth:`Producer.admit`), the claim itself, the idle waits between claims (woken by the
store, polling only as a fallback), and the drain when the node stops. Claiming stops at
:meth:`Producer.stop`; running handlers then get ``executor.shutdown_grace`` to finish and
are released (pending again, attempt refunded); :meth:`Producer.stop_now` skips the grace.

Flow control (:mod:`gladd.executor.flow`): held kinds (paused, cooling down) are left out
of every claim; kinds under a limit are claimed by ``Store.claim_gated``, after the plain
claim of the others, so a full limit never stands in an unlimited kind's way. A gated claim
is asked again when room may have opened: this node wrote a gated task's outcome (and rings
every node), the store woke us, a rate token is due, or a poll interval passed — never in a
tight loop, and a held task is never claimed only to be released.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.executor.flow import Hold, Split, gates_of, holds, next_expiry, split_kinds
from gladd.executor.kinds import KindRegistry
from gladd.executor.ledger import Ledger, Running, StopReason
from gladd.executor.pauses import OnBreakers, OnPauses, PauseCache
from gladd.policies import Policies
from gladd.resilience.clock import Clock
from gladd.store import GatedClaim, Store, Task
from gladd.store.gates import Gate, GateUsage

CLAIM_BATCH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """What the next claim may take: up to ``limit`` tasks of ``kinds`` plainly, then of
    ``split.gated`` through ``split.gates``."""

    limit: int
    kinds: Sequence[str]
    split: Split


@dataclass(slots=True)
class _Want:
    """Whether a claim may find something now.

    Poked by each wake-up that may bring work (the store's, a reload, a pause ending; for
    the gated claim also room freed here); a claim that came back short clears it — unless
    it was poked while the claim ran, whose news the claim's answer may predate — and it is
    wanted again anyway at ``look_at`` (a poll interval on), should a wake-up be missed.
    """

    dirty: bool = True
    pokes: int = 0
    look_at: float = -math.inf

    def poke(self) -> None:
        self.dirty = True
        self.pokes += 1

    def begin(self) -> int:
        return self.pokes

    def settle(self, full: bool, began: int, look_at: float) -> None:
        self.dirty = full or self.pokes != began
        self.look_at = look_at

    def wanted(self, now: float) -> bool:
        return self.dirty or now >= self.look_at


@dataclass(slots=True, kw_only=True, eq=False)
class Producer:
    """``await producer.run()`` claims until :meth:`stop`, then drains and returns."""

    store: Store
    kinds: KindRegistry
    policies: Callable[[], Policies]
    worker_id: str
    ledger: Ledger
    attempt: Callable[[Running], Coroutine[Any, Any, None]]
    now: Callable[[], datetime]
    clock: Clock
    store_health: Callable[[StoreError | None], None]
    on_pauses: OnPauses | None = None
    on_breakers: OnBreakers | None = None
    claimed: int = field(default=0, init=False)
    held: dict[str, Hold] = field(default_factory=dict, init=False)
    """Each kind held back now, and why (for health, metrics and ``tasks show``)."""
    gate_usage: dict[str, GateUsage] = field(default_factory=dict, init=False)
    """Each gate as the last gated claim found it."""
    gate_held: int = field(default=0, init=False)
    """Due tasks the last gated claim held back because a gate was full."""
    pause_cache: PauseCache = field(init=False)
    _gated_ids: dict[int, str] = field(default_factory=dict, init=False)  # id → kind
    _plain: _Want = field(default_factory=_Want, init=False)
    _gated: _Want = field(default_factory=_Want, init=False)
    _token_at: datetime | None = field(default=None, init=False)
    _gates_of: tuple[Policies | None, tuple[Gate, ...]] = field(default=(None, ()), init=False)
    _stopping: anyio.Event = field(default_factory=anyio.Event, init=False)
    # None until first entered: a producer can be built outside an event loop (anyio makes
    # a cancel scope only inside one), as the daemon builds its runtime before it runs.
    _idle: anyio.CancelScope | None = field(default=None, init=False)
    _grace: anyio.CancelScope | None = field(default=None, init=False)
    _no_grace: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.pause_cache = PauseCache(
            store=self.store,
            now=self.now,
            clock=self.clock,
            on_change=self.on_pauses,
            on_breakers=self.on_breakers,
        )
        self.ledger.on_ran = self._ran

    def admit(self, policies: Policies) -> Admission | None:
        """How many tasks, of which kinds, the next claim may take; None: none until a slot
        frees (or :meth:`wake`).

        This node's free slots (``executor.concurrency``) bound the count; the kinds are
        this node's, less those :attr:`held` (paused, cooling down), split into the ones
        claimed plainly and the ones a gate covers (:func:`~gladd.executor.flow.split_kinds`),
        whose room the store decides under the gates' locks.
        """
        free = policies.executor.concurrency - len(self.ledger.running)
        if free <= 0:
            return None
        split = split_kinds(self.kinds.names(), self._gates(policies), self.held)
        return Admission(limit=min(free, CLAIM_BATCH), kinds=split.free, split=split)

    def _gates(self, policies: Policies) -> tuple[Gate, ...]:
        """The policies' gates, compiled once per policies object (once per reload)."""
        if self._gates_of[0] is not policies:
            self._gates_of = (policies, gates_of(policies))
        return self._gates_of[1]

    def _ran(self, task: Task) -> None:
        """A handler here is done. Under a concurrency limit its slot is free at once: the
        gated claim leaves this node's ended attempts out of the count (``ended``) even
        before their outcomes are stored, so it looks again now."""
        if task.id in self._gated_ids and self._slotted(task.kind):
            self._gated.poke()
            self._cancel(self._idle)

    def _slotted(self, kind: str) -> bool:
        """Whether a concurrency limit covers ``kind`` (a rate frees nothing as tasks end)."""
        gates = self._gates(self.policies())
        return any(g.concurrency is not None and kind in g.kinds for g in gates)

    async def written(self, ids: Sequence[int]) -> None:
        """The completer stored these outcomes. A node with no free slot cannot use the room
        its ended tasks left in their limits, so it rings the others to claim it (a node
        that has one takes the room itself at once, see :meth:`_ran`; ringing then would
        only start a herd of claims queueing on the gate's lock)."""
        kinds = {kind for i in ids if (kind := self._gated_ids.pop(i, None)) is not None}
        if not kinds or not any(self._slotted(kind) for kind in kinds):
            return
        if len(self.ledger.running) < self.policies().executor.concurrency:
            return
        try:
            await self.store.ring()
        except StoreError as exc:
            logger.debug("telling other nodes a limit has room failed: {}", exc)

    def wake(self) -> None:
        """Look again now: a reload may have raised the concurrency or a limit."""
        self._plain.poke()
        self._gated.poke()
        self.ledger.nudge()
        self._cancel(self._idle)

    def stop(self) -> None:
        """Stop claiming; running tasks finish within the grace, then are released."""
        self._stopping.set()
        self._cancel(self._idle)

    def stop_now(self) -> None:
        """Stop claiming and release the running tasks at once, without the grace."""
        self._no_grace = True
        self.stop()
        self._cancel(self._grace)
        self.ledger.stop_all(StopReason.SHUTDOWN)

    @staticmethod
    def _cancel(scope: anyio.CancelScope | None) -> None:
        if scope is not None:
            scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as handlers:
            task_status.started()
            await self._claim_loop(handlers)
            await self._drain()

    async def _claim_loop(self, handlers: TaskGroup) -> None:
        while not self._stopping.is_set():
            policies = self.policies()
            await self._hold(policies)
            admission = self.admit(policies)
            if admission is None:
                await self._wait_for_slot()
                continue
            tasks = await self._claim(admission)
            if tasks is None:
                await self._idle_wait(policies.executor.poll_interval, store_wake=False)
                continue
            for task in tasks:
                handlers.start_soon(self.attempt, self.ledger.hold(task))
            if self._wanted(admission):
                continue
            # Both claims came back short: the store has no more for us now. An enqueue,
            # room in a gate, a token or the end of a pause wakes us sooner.
            if await self._idle_wait(self._idle_for(policies), store_wake=True):
                self._plain.poke()
                self._gated.poke()

    async def _hold(self, policies: Policies) -> None:
        """Bring :attr:`held` up to date with the policies and the store's pauses."""
        pauses = await self.pause_cache.refresh(policies.executor.poll_interval)
        held = holds(policies, pauses, self.kinds, self.now())
        if held.keys() != self.held.keys():
            _log_holds(self.held, held)
            self._plain.poke()
            self._gated.poke()
        self.held = held

    def _idle_for(self, policies: Policies) -> float:
        """How long to wait for work: the poll interval, or less when a rate token or the
        end of a pause is due sooner."""
        wait = policies.executor.poll_interval
        now = self.now()
        for at in (self._token_at, next_expiry(self.pause_cache.pauses, now)):
            if at is not None:
                wait = min(wait, max(0.0, (at - now).total_seconds()))
        return wait

    async def _claim(self, admission: Admission) -> list[Task] | None:
        """The plain claim, then the gated one for what room is left; None: the store
        failed (what either claim took is kept)."""
        tasks: list[Task] = []
        try:
            if self._plain_wanted(admission):
                began = self._plain.begin()
                tasks = await self.store.claim(
                    worker=self.worker_id,
                    limit=admission.limit,
                    now=self.now(),
                    kinds=admission.kinds,
                )
                self._plain.settle(len(tasks) >= admission.limit, began, self._look_again_at())
            room = admission.limit - len(tasks)
            if room > 0 and self._gated_wanted(admission.split):
                began = self._gated.begin()
                claim = await self.store.claim_gated(
                    worker=self.worker_id,
                    limit=room,
                    now=self.now(),
                    kinds=admission.split.gated,
                    gates=admission.split.gates,
                    ended=[i for i in self._gated_ids if i not in self.ledger.running],
                )
                tasks += self._took(claim)
                self._gated.settle(len(claim.tasks) >= room, began, self._look_again_at())
        except StoreError as exc:
            self.store_health(exc)
            logger.debug("claiming tasks failed, will retry: {}", exc)
            self.claimed += len(tasks)
            return tasks or None
        self.store_health(None)
        self.claimed += len(tasks)
        return tasks

    def _wanted(self, admission: Admission) -> bool:
        """Whether either claim may find something at once."""
        return self._plain_wanted(admission) or self._gated_wanted(admission.split)

    def _plain_wanted(self, admission: Admission) -> bool:
        if not admission.kinds:
            return False
        return self._plain.wanted(self.clock.monotonic())

    def _gated_wanted(self, split: Split) -> bool:
        if not split.gated:
            return False
        return self._gated.wanted(self.clock.monotonic())

    def _look_again_at(self) -> float:
        return self.clock.monotonic() + self.policies().executor.poll_interval

    def _took(self, claim: GatedClaim) -> list[Task]:
        """Note what a gated claim found; its tasks."""
        self.gate_usage = claim.usage
        self.gate_held = claim.held
        self._token_at = claim.next_at
        self._gated_ids.update((t.id, t.kind) for t in claim.tasks)
        return claim.tasks

    async def _idle_wait(self, seconds: float, *, store_wake: bool) -> bool:
        """Wait ``seconds``, or until the store wakes us; False when :meth:`wake` (or room
        freed here) cut it short, having said itself which claim to make."""
        with anyio.CancelScope() as idle:
            self._idle = idle
            if self._stopping.is_set():
                return True
            if store_wake:
                try:
                    await self.store.wait_for_work(seconds)
                except StoreError as exc:
                    logger.warning("waiting for tasks failed: {}", exc)
                    await self.clock.sleep(seconds)
            else:
                await self.clock.sleep(seconds)
        return not idle.cancelled_caught

    async def _wait_for_slot(self) -> None:
        with anyio.CancelScope() as self._idle:
            if not self._stopping.is_set():
                await self.ledger.slot_freed()

    async def _drain(self) -> None:
        running = self.ledger.running
        grace = 0.0 if self._no_grace else self.policies().executor.shutdown_grace
        if running and grace:
            logger.info("waiting up to {:g}s for {} running task(s)", grace, len(running))
        with anyio.move_on_after(grace) as self._grace:
            while running:
                await self.ledger.slot_freed()
        self.ledger.stop_all(StopReason.SHUTDOWN)
        if running:
            logger.warning("grace over: releasing {} task(s) to pending", len(running))


def _log_holds(before: dict[str, Hold], after: dict[str, Hold]) -> None:
    for kind in sorted(after.keys() - before.keys()):
        logger.info("not claiming {} tasks: {}", kind, after[kind].describe())
    for kind in sorted(before.keys() - after.keys()):
        logger.info("claiming {} tasks again ({} ended)", kind, before[kind].target)
