"""``/metrics``: every figure in Prometheus text format, from a registry of gladd's own.

Almost everything is read at scrape time by one custom collector from the live sources
(:class:`~gladd.observe.watched.Watched`): a scrape is a handful of dict walks, the figures
in one scrape are taken together, and nothing is counted twice. Only the task durations
are a real histogram, fed by the executor through :meth:`Metrics.observe_task`.

Names start with ``gladd_``, are in base units (seconds, ratios 0 to 1), and share labels:
``policy`` (retry or breaker policy), ``service`` (what a call or breaker guards: an HTTP
service, ``database``, or a task kind with a breaker of its own), ``kind`` (task kind),
``breaker``, ``state``, ``outcome``, ``trigger``. The README section lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gladd.executor.flow import FlowStatistics
from gladd.observe.health import HealthBoard, Status
from gladd.observe.health_checks import HealthChecker
from gladd.observe.pool import RULES, Level
from gladd.observe.watched import Watched
from gladd.resilience import Figures
from gladd.resilience.state import BreakerState
from gladd.store.base import TaskState

# The `_created` series of each counter and histogram are noise for Prometheus, which
# detects counter resets by itself (a process-wide switch of prometheus-client).
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic Prometheus text format, which every Prometheus version reads."""

TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
"""Seconds: from a quick handler up to the default 15-minute task timeout."""
POSTPONE_REASONS = ("breaker", "cooldown", "bulkhead")
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600)
"""Seconds after the tick: on time (milliseconds) up to an hour's catch-up."""


class Metrics:
    """The registry ``/metrics`` renders; see the module docstring."""

    def __init__(
        self,
        watched: Watched,
        *,
        board: HealthBoard,
        checker: HealthChecker | None = None,
        version: str,
        node: str,
        process: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        self._durations = Histogram(
            "gladd_task_duration_seconds",
            "Task attempts by kind and outcome: how long each ran (its _count counts them)",
            ["kind", "outcome"],
            buckets=TASK_BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str], Callable[[float], None]] = {}
        self._ticks = Counter(
            "gladd_schedule_ticks",
            "Schedule ticks handled by this node: fired on time, caught_up (fired late) or "
            "skipped (catch-up rule, window, overlap)",
            ["schedule", "outcome"],
            registry=self.registry,
        )
        self._lateness = Histogram(
            "gladd_schedule_lateness_seconds",
            "How long after its tick each scheduled task was enqueued",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Collector(watched, board, checker, version=version, node=node))
        if process:  # open fds, RSS, CPU: leaks show here (Linux /proc)
            ProcessCollector(namespace="gladd", registry=self.registry)

    def observe_task(self, kind: str, outcome: str, seconds: float) -> None:
        """One task attempt finished; ``outcome`` from
        :func:`~gladd.executor.outcomes.task_outcome`."""
        observe = self._children.get((kind, outcome))
        if observe is None:
            observe = self._children[kind, outcome] = self._durations.labels(kind, outcome).observe
        observe(seconds)

    def observe_ticks(self, schedule: str, outcome: str, count: int) -> None:
        """Ticks of ``schedule`` this node fired or skipped (the scheduler's report)."""
        self._ticks.labels(schedule, outcome).inc(count)

    def observe_lateness(self, seconds: float) -> None:
        self._lateness.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The scrape body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE


class _Collector(Collector):
    def __init__(
        self,
        watched: Watched,
        board: HealthBoard,
        checker: HealthChecker | None,
        *,
        version: str,
        node: str,
    ) -> None:
        self.w = watched
        self.board = board
        self.checker = checker
        self.version = version
        self.node = node

    def collect(self) -> Iterator[Metric]:
        build = InfoMetricFamily("gladd_build", "This gladd's version and node name")
        build.add_metric([], {"version": self.version, "node": self.node})
        yield build
        yield from self._health()
        yield from self._policies()
        yield from self._calls()
        yield from self._breakers()
        yield from self._services()
        yield from self._executor()
        yield from self._pool()
        yield from self._database()
        yield from self._lag()

    # -- health and policies -----------------------------------------------------------------

    def _health(self) -> Iterator[Metric]:
        status = GaugeMetricFamily(
            "gladd_health_status",
            "1 for the overall health status (pass, warn, fail) that /health reports",
            labels=["status"],
        )
        now = self.board.status()
        for value in Status:
            status.add_metric([value.value], float(value is now))
        yield status
        yield GaugeMetricFamily(
            "gladd_ready", "1 while /health/ready passes", value=float(self.board.ready()[0])
        )

    def _policies(self) -> Iterator[Metric]:
        reloads = self.w.reloads
        yield GaugeMetricFamily(
            "gladd_policies_generation",
            "The policies generation served (1 at start, +1 per applied reload)",
            value=self.w.generation(),
        )
        total = CounterMetricFamily(
            "gladd_reloads",
            "Policy reloads by trigger and outcome (not the file watcher's looks that found "
            "nothing new: see gladd_reload_checks_total)",
            labels=["trigger", "outcome"],
        )
        for (trigger, outcome), n in sorted(reloads.counts.items()):
            total.add_metric([trigger, outcome], n)
        yield total
        yield _counted(
            "gladd_reload_checks",
            "The file watcher's looks at the policies file that found nothing new, by trigger",
            "trigger",
            reloads.checks,
        )
        last = reloads.last
        ok = last is not None and last.outcome != "rejected"
        yield GaugeMetricFamily(
            "gladd_reload_last_success",
            "1 unless the last reload was rejected and the file is still not the served one",
            value=float(ok),
        )
        success = reloads.last_success
        yield GaugeMetricFamily(
            "gladd_reload_last_success_timestamp_seconds",
            "Unix time of the last successful reload (or of the start)",
            value=success.at if success is not None else 0.0,
        )

    # -- resilience ---------------------------------------------------------------------------

    def _calls(self) -> Iterator[Metric]:
        by_target = sorted(self.w.counters.by_target().items())
        pl = ["policy", "service"]
        calls = CounterMetricFamily(
            "gladd_calls",
            "Guarded calls by outcome (succeeded, failed, rejected by a breaker)",
            labels=[*pl, "outcome"],
        )
        retries = CounterMetricFamily("gladd_retries", "Retries scheduled", labels=pl)
        retried = CounterMetricFamily(
            "gladd_retried_calls",
            "Calls that needed a retry, by final outcome",
            labels=[*pl, "outcome"],
        )
        budget = CounterMetricFamily(
            "gladd_retry_budget_exhausted", "Retries refused by the retry budget", labels=pl
        )
        timeouts = CounterMetricFamily(
            "gladd_call_timeouts",
            "Attempts cut by the attempt timeout or the total deadline",
            labels=[*pl, "scope"],
        )
        fallbacks = CounterMetricFamily(
            "gladd_fallbacks",
            "Fallback use while a breaker rejects: static, cache_hit, cache_miss",
            labels=[*pl, "outcome"],
        )
        for (policy, service), f in by_target:
            key = [policy, service]
            calls.add_metric([*key, "succeeded"], f.succeeded)
            calls.add_metric([*key, "failed"], f.failed)
            calls.add_metric([*key, "rejected"], f.rejected)
            retried.add_metric([*key, "succeeded"], f.succeeded_after_retry)
            retried.add_metric([*key, "failed"], f.failed_after_retry)
            retries.add_metric(key, f.retries)
            budget.add_metric(key, f.budget_exhausted)
            timeouts.add_metric([*key, "attempt"], f.attempt_timeouts)
            timeouts.add_metric([*key, "total"], f.total_timeouts)
            fallbacks.add_metric([*key, "static"], f.static_fallbacks)
            fallbacks.add_metric([*key, "cache_hit"], f.cache_hits)
            fallbacks.add_metric([*key, "cache_miss"], f.cache_misses)
        yield from (calls, retries, retried, budget, timeouts, fallbacks)
        yield from _ratios(by_target)

    def _breakers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "gladd_breaker_state",
            "1 for each breaker's current state",
            labels=["breaker", "service", "state"],
        )
        tripped = 0
        for (name, service), breaker in sorted(self.w.resilience.breakers().items()):
            now = breaker.state
            tripped += now in (BreakerState.OPEN, BreakerState.ISOLATED)
            for value in BreakerState:
                state.add_metric([name, service, value.value], float(value is now))
        yield state
        yield GaugeMetricFamily(
            "gladd_breakers_open",
            "Breakers failing calls fast now (open or isolated)",
            value=tripped,
        )
        moves = CounterMetricFamily(
            "gladd_breaker_transitions",
            "Breaker state changes, by the state entered",
            labels=["breaker", "service", "state"],
        )
        for (name, service, new), n in sorted(self.w.counters.transitions.items()):
            moves.add_metric([name, service, new], n)
        yield moves

    def _services(self) -> Iterator[Metric]:
        resilience, counters = self.w.resilience, self.w.counters
        in_flight = GaugeMetricFamily(
            "gladd_service_in_flight",
            "Requests to each service with a bulkhead (max_in_flight) in flight from this node",
            labels=["service"],
        )
        cooling = GaugeMetricFamily(
            "gladd_service_cooldown",
            "1 while a service cools down (nothing is sent to it from this node)",
            labels=["service"],
        )
        active = resilience.cooldowns.active()
        for service, outbound in sorted(resilience.outbounds().items()):
            if outbound.bulkhead.limit is not None:
                in_flight.add_metric([service], outbound.bulkhead.in_flight)
            cooling.add_metric([service], float(service in active))
        yield from (in_flight, cooling)
        refused = CounterMetricFamily(
            "gladd_service_rejections",
            "Requests failed before leaving: reason max_in_flight (bulkhead full), rate (no "
            "token within max_wait) or cooldown",
            labels=["service", "reason"],
        )
        for (service, reason), n in sorted(counters.refusals.items()):
            refused.add_metric([service, reason], n)
        yield refused
        yield _counted(
            "gladd_service_rate_waits",
            "Requests that waited for an outbound rate token",
            "service",
            counters.rate_waits,
        )
        waited = CounterMetricFamily(
            "gladd_service_rate_wait_seconds",
            "Time requests spent waiting for outbound rate tokens",
            labels=["service"],
        )
        for service, seconds in sorted(counters.rate_wait_seconds.items()):
            waited.add_metric([service], seconds)
        yield waited
        yield _counted(
            "gladd_service_cooldowns",
            "Cooldowns begun (or extended) by a service's 429/503 with Retry-After",
            "service",
            counters.cooldowns,
        )

    # -- tasks ----------------------------------------------------------------------------------

    def _executor(self) -> Iterator[Metric]:
        if self.w.executor_running():
            s = self.w.executor.statistics()
            yield GaugeMetricFamily(
                "gladd_tasks_running", "Tasks running on this node", value=s.running
            )
            outcomes = CounterMetricFamily(
                "gladd_task_outcomes",
                "Task outcomes written by this node",
                labels=["outcome"],
            )
            for outcome, n in (
                ("succeeded", s.succeeded),
                ("failed", s.failed - s.dead),
                ("dead", s.dead),
                ("released", s.released),
                ("cancelled", s.cancelled),
            ):
                outcomes.add_metric([outcome], n)
            yield outcomes
            for name, doc, n in (
                ("gladd_tasks_claimed", "Tasks claimed by this node", s.claimed),
                ("gladd_task_timeouts", "Attempts that hit their task timeout", s.timeouts),
                ("gladd_task_rescues", "Tasks taken back from workers presumed dead", s.rescued),
                (
                    "gladd_task_fencing_rejections",
                    "Outcomes discarded: another worker owned the task by then",
                    s.fenced,
                ),
            ):
                yield CounterMetricFamily(name, doc, value=n)
            postponed = CounterMetricFamily(
                "gladd_tasks_postponed",
                "Tasks postponed without spending an attempt, by reason: breaker (open), "
                "cooldown (their service's), bulkhead (their service's is full or no rate token)",
                labels=["reason"],
            )
            for reason in POSTPONE_REASONS:
                postponed.add_metric([reason], s.postponed_by.get(reason, 0))
            yield postponed
            attempts = s.succeeded + s.failed
            if attempts:
                yield GaugeMetricFamily(
                    "gladd_task_timeout_ratio",
                    "Share of this node's finished attempts that timed out, since start",
                    value=s.timeouts / attempts,
                )
        if self.w.executor_running():
            yield from _flow(self.w.executor.flow())
        stats = self.checker.stats if self.checker is not None else None
        if stats is not None:
            # Every state of every kind that has tasks, 0s included, so a first dead task
            # moves an existing series; `sum without (kind)` gives the store's totals.
            tasks = GaugeMetricFamily(
                "gladd_tasks",
                "Tasks in the store by kind and state (all nodes; read every ~10s)",
                labels=["kind", "state"],
            )
            for kind, states in stats.by_kind.items():
                for value in TaskState:
                    tasks.add_metric([kind, value.value], states.get(value, 0))
            yield tasks

    # -- the database and its pool ----------------------------------------------------------------

    def _database(self) -> Iterator[Metric]:
        stats = self.w.store.pool_stats()
        info = InfoMetricFamily("gladd_db", "The task store's backend")
        info.add_metric([], {"backend": stats.backend})
        yield info
        if self.checker is not None:
            response = self.checker.response_time
            yield GaugeMetricFamily(
                "gladd_db_up",
                "1 while the health check's database ping succeeds",
                value=float(response is not None),
            )
            if response is not None:
                yield GaugeMetricFamily(
                    "gladd_db_response_time_seconds",
                    "The last database ping's duration",
                    value=response,
                )
        db = [f for (_, service), f in self.w.counters.by_target().items() if service == "database"]
        ratio = sum(db, Figures()).timeout_rate
        if ratio is not None:
            yield GaugeMetricFamily(
                "gladd_db_query_timeout_ratio",
                "Share of database query attempts that timed out, since start",
                value=ratio,
            )

    def _pool(self) -> Iterator[Metric]:
        stats = self.w.store.pool_stats()
        conns = GaugeMetricFamily(
            "gladd_db_pool_connections",
            "Connections by state (SQLite: its one connection)",
            labels=["state"],
        )
        conns.add_metric(["in_use"], stats.in_use)
        conns.add_metric(["idle"], stats.idle)
        yield conns
        yield GaugeMetricFamily("gladd_db_pool_size", "Connections open", value=stats.size)
        yield GaugeMetricFamily(
            "gladd_db_pool_max_size", "The most connections allowed", value=stats.max_size
        )
        yield GaugeMetricFamily(
            "gladd_db_pool_utilization_ratio",
            "In-use connections / the maximum",
            value=stats.utilization,
        )
        yield GaugeMetricFamily(
            "gladd_db_pool_waiting", "Callers waiting for a connection now", value=stats.waiting
        )
        yield CounterMetricFamily(
            "gladd_db_pool_acquisitions",
            "Connections acquired from the pool",
            value=stats.acquisitions,
        )
        yield CounterMetricFamily(
            "gladd_db_pool_acquire_wait_seconds",
            "Time spent waiting to acquire connections",
            value=stats.acquire_wait_total,
        )
        yield from self._pool_alerts()

    def _pool_alerts(self) -> Iterator[Metric]:
        monitor = self.w.pool
        if monitor.latest is not None:
            yield GaugeMetricFamily(
                "gladd_db_pool_acquire_wait_current_seconds",
                "The acquire wait the alert rules judged at the last sample",
                value=monitor.latest.acquire_wait,
            )
        worst = monitor.alerts.level()
        yield GaugeMetricFamily(
            "gladd_db_pool_degraded",
            "1 while a pool alert fires (warn or critical)",
            value=float(worst is not Level.OK),
        )
        yield GaugeMetricFamily(
            "gladd_db_pool_critical",
            "1 while a critical pool alert fires",
            value=float(worst is Level.CRITICAL),
        )
        alert = GaugeMetricFamily(
            "gladd_db_pool_alert",
            "1 for each pool alert rule's current level",
            labels=["rule", "level"],
        )
        for rule in RULES:
            level = monitor.alerts.level(rule)
            for value in Level:
                alert.add_metric([rule, value.value], float(value is level))
        yield alert
        raised = CounterMetricFamily(
            "gladd_db_pool_alerts",
            "Pool alerts raised, by rule and level",
            labels=["rule", "level"],
        )
        for rule in RULES:
            for value in (Level.WARN, Level.CRITICAL):
                raised.add_metric([rule, value.value], monitor.raised[rule, value])
        yield raised

    # -- the event loop -------------------------------------------------------------------------

    def _lag(self) -> Iterator[Metric]:
        lag = self.w.lag
        hist = HistogramMetricFamily(
            "gladd_event_loop_lag_seconds", "How late the event loop woke up, per measurement"
        )
        hist.add_metric([], lag.histogram.buckets(), sum_value=lag.histogram.total)
        yield hist
        yield _counted(
            "gladd_event_loop_blocks",
            "Lags over the threshold, by the task kind to blame",
            "kind",
            lag.blocks,
        )


def _flow(flow: FlowStatistics) -> Iterator[Metric]:
    """Limits (as this node's last gated claim saw them) and the pauses in force."""
    running = GaugeMetricFamily(
        "gladd_limit_running", "Tasks running under each limit, all nodes", labels=["limit"]
    )
    allowed = GaugeMetricFamily(
        "gladd_limit_allowed", "Each limit's concurrency (per partition)", labels=["limit"]
    )
    rate = GaugeMetricFamily(
        "gladd_limit_rate", "Each limit's starts per second (per partition)", labels=["limit"]
    )
    tokens = GaugeMetricFamily(
        "gladd_limit_tokens", "Start tokens left in each unpartitioned rate limit", labels=["limit"]
    )
    held = GaugeMetricFamily(
        "gladd_limit_held",
        "Due tasks the last claim held back because the limit was full",
        labels=["limit"],
    )
    for gate in flow.gates:
        usage = flow.usage.get(gate.name)
        running.add_metric([gate.name], usage.running if usage else 0)
        held.add_metric([gate.name], usage.held if usage else 0)
        if gate.concurrency is not None:
            allowed.add_metric([gate.name], gate.concurrency)
        if gate.rate is not None:
            rate.add_metric([gate.name], gate.rate)
        if usage is not None and usage.tokens is not None:
            tokens.add_metric([gate.name], usage.tokens)
    yield from (running, allowed, rate, tokens, held)
    yield GaugeMetricFamily(
        "gladd_tasks_held",
        "Due tasks the last gated claim held back (a limit full or out of tokens)",
        value=flow.held_tasks,
    )
    pauses = GaugeMetricFamily(
        "gladd_pause_active",
        "1 for each pause or cooldown in force, by target and who set it",
        labels=["target", "by"],
    )
    for hold in flow.pauses:
        pauses.add_metric([hold.target, hold.source], 1)
    yield pauses
    kinds = GaugeMetricFamily(
        "gladd_kind_held",
        "1 for each task kind this node does not claim now, with the pause that holds it",
        labels=["kind", "target"],
    )
    for kind, hold in sorted(flow.held_kinds.items()):
        kinds.add_metric([kind, hold.target], 1)
    yield kinds


def _counted(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    """A counter with one label, one sample per key of ``counts``, in key order."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, n in sorted(counts.items()):
        family.add_metric([key], n)
    return family


def _ratios(by_target: list[tuple[tuple[str, str], Figures]]) -> Iterator[Metric]:
    pl = ["policy", "service"]
    retry = GaugeMetricFamily(
        "gladd_retry_success_ratio",
        "Of calls that needed a retry, the share that succeeded",
        labels=pl,
    )
    cache = GaugeMetricFamily(
        "gladd_fallback_cache_hit_ratio",
        "Of cache fallback lookups, the share that hit",
        labels=pl,
    )
    timeout = GaugeMetricFamily(
        "gladd_call_timeout_ratio", "Of attempts, the share that timed out", labels=pl
    )
    for (policy, service), f in by_target:
        for family, value in (
            (retry, f.retry_success_rate),
            (cache, f.cache_hit_rate),
            (timeout, f.timeout_rate),
        ):
            if value is not None:
                family.add_metric([policy, service], value)
    yield from (retry, cache, timeout)
