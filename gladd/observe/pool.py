"""Pool alerts: the ``[pool_alerts]`` rules over samples of the store's connection pool.

Pure part — :class:`PoolAlerts` — takes a :class:`PoolSample` and ``now`` and returns the
alert changes, so tests drive it with a fake clock. Each rule (``utilization``,
``acquire_wait``) has a warn and a critical threshold; a level fires once its threshold
has been met continuously for the rule's ``for`` (a blip does not page), and clears as soon
as a sample is back under it (a recovery; it must hold ``for`` again to fire again)::

    ok ──≥ warn for `for`──▶ warn ──≥ critical for `for`──▶ critical
     ▲                        │                               │
     └──── < warn ────────────┴──── < warn ───────────────────┘   (< critical: back to warn)

Shell — :class:`PoolMonitor` — samples ``store.pool_stats()`` every ``interval``, logs each
change (warning when warn fires, error when critical fires, info on recovery) and keeps
the state that health checks and metrics read. A store that is not a pool (SQLite's single
connection, the memory store) is sampled and reported as it is; the rules do not apply.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.durations import format_duration
from gladd.policies import Policies
from gladd.policies.model import AlertThresholds, PoolAlertPolicy, WaitThresholds
from gladd.store.base import PoolStats, Store

RULES = ("utilization", "acquire_wait")


class Level(StrEnum):
    """An alert's level, from best to worst."""

    OK = "ok"  # under the warn threshold (or not yet held for `for`)
    WARN = "warn"  # the pool is degraded: an operator should look
    CRITICAL = "critical"  # callers are starved of connections


_RANK = {Level.OK: 0, Level.WARN: 1, Level.CRITICAL: 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSample:
    """One sample, with the acquire wait measured over the interval before it."""

    stats: PoolStats
    acquire_wait: float
    """Seconds: the mean wait of acquisitions since the previous sample, or the longest
    current wait if that is longer (a pool that hands out nothing shows a growing wait)."""

    @property
    def utilization(self) -> float:
        return self.stats.utilization

    def value(self, rule: str) -> float:
        return self.utilization if rule == "utilization" else self.acquire_wait

    @classmethod
    def between(cls, before: PoolStats | None, now: PoolStats) -> PoolSample:
        mean = 0.0
        if before is not None:
            count = now.acquisitions - before.acquisitions
            if count > 0:
                mean = (now.acquire_wait_total - before.acquire_wait_total) / count
        return cls(stats=now, acquire_wait=max(mean, now.longest_wait))


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertChange:
    """A rule moved from ``old`` to ``new`` at ``value`` (threshold: the level's, or for a
    recovery the warn threshold it fell under)."""

    rule: str
    old: Level
    new: Level
    value: float
    threshold: float
    hold: float

    @property
    def recovered(self) -> bool:
        return self.new is Level.OK

    @property
    def worse(self) -> bool:
        return _RANK[self.new] > _RANK[self.old]

    def message(self) -> str:
        what = "pool utilisation" if self.rule == "utilization" else "pool acquire wait"
        value, threshold = _shown(self.rule, self.value), _shown(self.rule, self.threshold)
        if self.recovered:
            return f"{what} back to normal: {value} < warn {threshold} (was {self.old})"
        if self.worse:
            held = format_duration(self.hold)
            return f"{what} {self.new}: {value} ≥ {threshold} for {held} (was {self.old})"
        return f"{what} down to {self.new}: {value}, under critical (was {self.old})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A firing alert, as health and ``gladd status`` show it."""

    rule: str
    level: Level
    value: float
    since: float

    def describe(self) -> str:
        return f"{self.rule} {self.level} ({_shown(self.rule, self.value)})"


def _shown(rule: str, value: float) -> str:
    return f"{value:.0%}" if rule == "utilization" else format_duration(value)


class _Rule:
    """One rule's state: since when each threshold has been met without a break."""

    __slots__ = ("level", "met_critical", "met_warn", "since", "value")

    def __init__(self) -> None:
        self.level = Level.OK
        self.met_warn: float | None = None
        self.met_critical: float | None = None
        self.since = 0.0
        self.value = 0.0

    def observe(self, value: float, limits: AlertThresholds | WaitThresholds, now: float) -> Level:
        self.value = value
        self.met_warn = _met(self.met_warn, value >= limits.warn, now)
        self.met_critical = _met(self.met_critical, value >= limits.critical, now)
        if self.met_critical is not None and now - self.met_critical >= limits.hold:
            return Level.CRITICAL
        if self.met_warn is None:
            return Level.OK
        if now - self.met_warn >= limits.hold or self.level is not Level.OK:
            # Down from critical (still over warn) is warn at once: it has held already.
            return Level.WARN
        return Level.OK


def _met(since: float | None, met: bool, now: float) -> float | None:
    if not met:
        return None
    return now if since is None else since


class PoolAlerts:
    """The rules' state; :meth:`observe` each sample in time order."""

    def __init__(self, policy: PoolAlertPolicy) -> None:
        self.policy = policy
        self._rules = {rule: _Rule() for rule in RULES}

    def configure(self, policy: PoolAlertPolicy) -> None:
        """New thresholds (a reload); how long each has been met is kept."""
        self.policy = policy

    def observe(self, sample: PoolSample, now: float) -> list[AlertChange]:
        changes = []
        for name, state in self._rules.items():
            limits = self._limits(name)
            new = state.observe(sample.value(name), limits, now)
            if new is state.level:
                continue
            threshold = limits.critical if new is Level.CRITICAL else limits.warn
            changes.append(
                AlertChange(
                    rule=name,
                    old=state.level,
                    new=new,
                    value=state.value,
                    threshold=threshold,
                    hold=limits.hold,
                )
            )
            state.level, state.since = new, now
        return changes

    def _limits(self, rule: str) -> AlertThresholds | WaitThresholds:
        if rule == "utilization":
            return self.policy.utilization
        return self.policy.acquire_wait

    def level(self, rule: str | None = None) -> Level:
        """One rule's level, or the worst of all."""
        if rule is not None:
            return self._rules[rule].level
        return max((r.level for r in self._rules.values()), key=_RANK.__getitem__)

    def firing(self) -> list[Alert]:
        return [
            Alert(rule=name, level=r.level, value=r.value, since=r.since)
            for name, r in self._rules.items()
            if r.level is not Level.OK
        ]


class PoolMonitor:
    """Samples the store's pool every ``[pool_alerts].interval`` and applies the rules.

    ``await tg.start(monitor.run)``; tests call :meth:`sample` with a fake clock instead.
    """

    def __init__(
        self,
        store: Store,
        policies: Callable[[], Policies],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._policies = policies
        self._clock = clock
        self.alerts = PoolAlerts(self._policy())
        self.latest: PoolSample | None = None
        self.raised: Counter[tuple[str, Level]] = Counter()
        """Alerts fired so far, by (rule, level)."""

    def _policy(self) -> PoolAlertPolicy:
        return self._policies().pool_alerts

    def sample(self) -> list[AlertChange]:
        """Take one sample, apply the rules and log what changed."""
        stats = self.store.pool_stats()
        before = self.latest.stats if self.latest is not None else None
        self.latest = PoolSample.between(before, stats)
        if not (stats.pooled and stats.open):
            return []  # nothing to judge: one connection, or none while the store is away
        self.alerts.configure(self._policy())
        changes = self.alerts.observe(self.latest, self._clock())
        for change in changes:
            self._report(change)
        return changes

    def _report(self, change: AlertChange) -> None:
        stats = self.latest.stats if self.latest is not None else None
        where = ""
        if stats is not None:
            where = (
                f" [{stats.in_use} in use, {stats.idle} idle of max {stats.max_size}, "
                f"{stats.waiting} waiting] at {self.store.url}"
            )
        if change.recovered:
            logger.info("{}{}", change.message(), where)
            return
        if change.worse:
            self.raised[change.rule, change.new] += 1
        log = logger.error if change.new is Level.CRITICAL else logger.warning
        log("{}{}", change.message(), where)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.sample()
            await anyio.sleep(self._policy().interval)
