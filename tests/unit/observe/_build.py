"""The observability pieces wired as the daemon wires them, for tests."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from loguru import logger

from gladd.errors import StoreError
from gladd.executor.flow import FlowStatistics
from gladd.executor.statistics import ExecutorStatistics
from gladd.observe.health import HealthBoard
from gladd.observe.health_checks import HealthChecker
from gladd.observe.lag import LagMonitor
from gladd.observe.metrics import Metrics
from gladd.observe.pool import PoolMonitor
from gladd.observe.reloads import Reloads
from gladd.observe.watched import Watched
from gladd.policies import Policies
from gladd.resilience import Counters, LogSink, Resilience
from gladd.resilience.clock import Clock, SystemClock
from gladd.store.base import ScheduleState, Store


@dataclass
class FakeExecutor:
    """Reads as an executor does: ``running`` now, and the counts in ``stats``."""

    running: int = 0
    stats: ExecutorStatistics = field(default_factory=ExecutorStatistics)

    schedules: dict[str, ScheduleState] = field(default_factory=dict)
    flows: FlowStatistics = field(default_factory=FlowStatistics)

    def statistics(self) -> ExecutorStatistics:
        return dataclasses.replace(self.stats, running=self.running)

    def schedule_states(self) -> dict[str, ScheduleState]:
        return self.schedules

    def flow(self) -> FlowStatistics:
        return self.flows


@dataclass
class Observed:
    """Everything, built around one store and one policies value."""

    store: Store
    policies: Policies
    clock: Clock = field(default_factory=SystemClock)
    executor: FakeExecutor | None = None
    board: HealthBoard = field(init=False)
    counters: Counters = field(init=False)
    resilience: Resilience = field(init=False)
    reloads: Reloads = field(init=False)
    pool: PoolMonitor = field(init=False)
    lag: LagMonitor = field(init=False)
    watched: Watched = field(init=False)
    checker: HealthChecker = field(init=False)
    metrics: Metrics = field(init=False)
    pings: list[StoreError | None] = field(init=False)

    def __post_init__(self) -> None:
        self.board = HealthBoard(version="9.9.9", service_id="node-a")
        self.board.started = True
        self.counters = Counters()
        self.resilience = Resilience(
            self.policies, sinks=[self.counters, LogSink(logger)], clock=self.clock
        )
        self.reloads = Reloads()
        self.reloads.record("start", "applied", generation=1, at=time.time())
        self.pool = PoolMonitor(self.store, lambda: self.policies)
        self.lag = LagMonitor(lambda: self.policies)
        self.watched = Watched(
            store=self.store,
            policies=lambda: self.policies,
            generation=lambda: 1,
            resilience=self.resilience,
            executor=self,
            executor_running=lambda: self.executor is not None,
            pool=self.pool,
            lag=self.lag,
            reloads=self.reloads,
            counters=self.counters,
        )
        self.pings: list[StoreError | None] = []
        self.checker = HealthChecker(self.board, self.watched, on_ping=self.pings.append)
        self.metrics = Metrics(
            self.watched, board=self.board, checker=self.checker, version="9.9.9", node="node-a"
        )

    def statistics(self) -> ExecutorStatistics:
        """The executor's, as the daemon's Watched reads them."""
        assert self.executor is not None
        return self.executor.statistics()

    def schedule_states(self) -> dict[str, ScheduleState]:
        return self.executor.schedule_states() if self.executor is not None else {}

    def flow(self) -> FlowStatistics:
        return self.executor.flow() if self.executor is not None else FlowStatistics()

    def status_of(self, key: str) -> str:
        return str(self.board.report()["checks"][key][0]["status"])
