"""Everything the health checks and the metrics read, in one place.

Built once by the composition root; each field is read at check or scrape time, so what
health and ``/metrics`` show is always the live state, and nothing is pushed twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gladd.executor.flow import FlowStatistics
from gladd.executor.statistics import ExecutorStatistics
from gladd.observe.lag import LagMonitor
from gladd.observe.pool import PoolMonitor
from gladd.observe.reloads import Reloads
from gladd.policies import Policies
from gladd.resilience.counters import Counters
from gladd.resilience.guards import Resilience
from gladd.store.base import ScheduleState, Store


class ExecutorView(Protocol):
    """What is read of the executor (:class:`gladd.executor.runner.Executor`): only its
    snapshot, taken afresh at each check or scrape."""

    def statistics(self) -> ExecutorStatistics: ...

    def schedule_states(self) -> dict[str, ScheduleState]: ...

    def flow(self) -> FlowStatistics: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Watched:
    store: Store
    policies: Callable[[], Policies]
    generation: Callable[[], int]
    resilience: Resilience
    executor: ExecutorView
    executor_running: Callable[[], bool]
    """Whether the executor runs (the store has opened): until then its figures are
    absent from health and metrics, not zeros."""
    pool: PoolMonitor
    lag: LagMonitor
    reloads: Reloads
    counters: Counters
