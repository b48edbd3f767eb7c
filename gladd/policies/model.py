"""The language of ``policies.toml``: frozen pydantic models, one per section.

Each field is *hot* (applied live on reload) unless its ``json_schema_extra`` says
``{"restart": True}``; a reload that changes a restart-only field is refused. The
cross-references between sections (a service naming a retry policy, say) and the
combinations no single field can judge are checked by :func:`semantic_problems`, which
returns every problem at once with its exact key path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from gladd.duration_fields import Duration
from gladd.durations import format_duration
from gladd.errors import Problem
from gladd.rates import Rate

RetryOn = Literal["connect", "timeout", "reset", "5xx", "408", "429"]
BackoffKind = Literal["constant", "linear", "exponential", "decorrelated"]
"""How delays grow between retries (the engine's :class:`~gladd.resilience.backoff.Backoff`)."""
JitterKind = Literal["none", "full", "equal"]
"""How much of each delay is randomised (none, all of it, or its upper half)."""
CatchUp = Literal["latest", "all", "none"]
"""Which of a schedule's missed fire times run after a gap (see gladd.maintenance.ticks)."""
Overlap = Literal["skip", "allow", "buffer_one"]
"""What a fire time does while the schedule's previous task is still queued or running."""
MIN_EVERY = 1.0
"""The shortest ``every`` a schedule may have, in seconds."""
DEFAULT_RETRY_ON: tuple[RetryOn, ...] = ("connect", "timeout", "reset", "5xx", "408", "429")

_RESTART: dict[str, JsonValue] = {"restart": True}


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ExecutorPolicy(_Section):
    """How tasks are claimed and run."""

    concurrency: int = Field(10, ge=1, le=10_000)
    task_timeout: Duration = 900.0
    lease: Duration = 30.0
    heartbeat: Duration = 10.0
    shutdown_grace: Duration = 30.0
    poll_interval: Duration = 2.0
    max_rescues: int = Field(3, ge=0, le=1000)
    retention: Duration = 7 * 86400.0
    retry: str | None = None


class DatabasePolicy(_Section):
    """How gladd treats its own store."""

    query_timeout: Duration = 5.0
    retry: str | None = None
    pool_min_size: int = Field(1, ge=0, le=1000, json_schema_extra=_RESTART)
    pool_max_size: int = Field(10, ge=1, le=1000, json_schema_extra=_RESTART)


class BudgetPolicy(_Section):
    """Retries allowed only while they stay under ``ratio`` of calls in ``window``."""

    ratio: float = Field(0.2, gt=0.0, le=1.0)
    window: Duration = 10.0
    min_per_second: float = Field(1.0, ge=0.0)


class RetryPolicy(_Section):
    """A named retry policy; ``attempts`` counts the first call."""

    attempts: int = Field(3, ge=1, le=100)
    backoff: BackoffKind = "exponential"
    base_delay: Duration = 0.1
    max_delay: Duration = 10.0
    multiplier: float = Field(2.0, ge=1.0, le=100.0)
    jitter: JitterKind = "full"
    deadline: Duration = 60.0
    on: tuple[RetryOn, ...] = DEFAULT_RETRY_ON
    exceptions: tuple[str, ...] = ()
    retry_after_cap: Duration = 30.0
    idempotent_only: bool = True
    budget: BudgetPolicy | None = BudgetPolicy()


class BreakerPolicy(_Section):
    """A named circuit breaker."""

    mode: Literal["consecutive", "ratio"] = "consecutive"
    failures: int = Field(5, ge=1, le=10_000)
    failure_ratio: float = Field(0.5, gt=0.0, le=1.0)
    minimum_calls: int = Field(10, ge=1, le=1_000_000)
    window: Duration = 30.0
    slow_call: Duration | None = None
    open_for: Duration = 60.0
    open_backoff: float = Field(1.0, ge=1.0, le=100.0)
    max_open_for: Duration = 600.0
    half_open_probes: int = Field(1, ge=1, le=1000)
    fallback: Literal["error", "static", "cache"] = "error"
    fallback_value: Any = None
    cache_max_age: Duration = 3600.0


class ServiceBinding(_Section):
    """An outside service: which policies guard calls to it, and how much of it one node
    may use at once."""

    retry: str | None = None
    breaker: str | None = None
    timeout: Duration = 10.0
    hosts: tuple[str, ...] = ()
    retry_non_idempotent: bool = False
    max_in_flight: int | None = Field(None, ge=1, le=100_000)  # bulkhead, per node
    rate: Rate | None = None  # outbound requests per second, per node
    max_wait: Duration = 5.0  # for a bulkhead slot or a rate token, then BulkheadFull
    cooldown: bool = True  # a 429/503 with Retry-After pauses its kinds on every node
    paused: bool = False  # its kinds are not claimed


class LimitPolicy(_Section):
    """A named limit shared by the kinds that list it in ``limits``: at most
    ``concurrency`` running at once and ``rate`` starts (with ``burst``) across every node,
    per value of the payload field ``partition`` when set."""

    concurrency: int | None = Field(None, ge=1, le=1_000_000)
    rate: Rate | None = None
    burst: int = Field(1, ge=1, le=1_000_000)
    partition: str | None = None
    paused: bool = False


class TaskBinding(_Section):
    """A task kind: its timeout and the policies its attempts run under."""

    timeout: Duration | None = None
    retry: str | None = None
    breaker: str | None = None
    service: str | None = None
    priority: int = Field(0, ge=-1000, le=1000)
    concurrency: int | None = Field(None, ge=1, le=1_000_000)  # across every node
    rate: Rate | None = None  # starts per second across every node
    burst: int = Field(1, ge=1, le=1_000_000)
    partition: str | None = None  # payload field: the limits above apply per value
    limits: tuple[str, ...] = ()  # named [limits.NAME] this kind also counts against
    paused: bool = False


class AlertThresholds(_Section):
    """Warn and critical thresholds, held for ``for`` before an alert fires."""

    warn: float
    critical: float
    hold: Duration = Field(30.0, alias="for")


class WaitThresholds(_Section):
    """Like :class:`AlertThresholds`, for a duration measure."""

    warn: Duration
    critical: Duration
    hold: Duration = Field(30.0, alias="for")


class PoolAlertPolicy(_Section):
    """Rules on the database pool's health."""

    interval: Duration = 5.0
    utilization: AlertThresholds = AlertThresholds(warn=0.8, critical=0.95)
    acquire_wait: WaitThresholds = WaitThresholds.model_validate(
        {"warn": "100ms", "critical": "1s"}
    )


class EventLoopPolicy(_Section):
    """The event-loop lag monitor."""

    interval: Duration = 0.5
    lag_threshold: Duration = 0.1


class SchedulePolicy(_Section):
    """A periodic task: when it fires (``cron`` or ``every``) and what it enqueues."""

    cron: str | None = None
    every: Duration | None = None
    timezone: str = "UTC"
    kind: str
    payload: dict[str, Any] = {}
    priority: int | None = Field(None, ge=-1000, le=1000)
    jitter: Duration = 0.0
    catch_up: CatchUp = "latest"
    catch_up_window: Duration = 6 * 3600.0
    overlap: Overlap = "skip"
    paused: bool = False

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5:
            raise ValueError(
                f"{value!r} is not a 5-field cron expression "
                "(minute hour day-of-month month day-of-week)"
            )
        try:
            CronSim(value, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as exc:
            raise ValueError(f"{value!r} is not a cron expression: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name like 'Europe/Berlin' or 'UTC'"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone (cached by zoneinfo itself)."""
        return ZoneInfo(self.timezone)


class Policies(_Section):
    """The whole of ``policies.toml``."""

    schema_version: Literal[1] = 1
    executor: ExecutorPolicy = ExecutorPolicy()
    database: DatabasePolicy = DatabasePolicy()
    retry: dict[str, RetryPolicy] = {}
    breaker: dict[str, BreakerPolicy] = {}
    services: dict[str, ServiceBinding] = {}
    tasks: dict[str, TaskBinding] = {}
    limits: dict[str, LimitPolicy] = {}
    pool_alerts: PoolAlertPolicy = PoolAlertPolicy()
    event_loop: EventLoopPolicy = EventLoopPolicy()
    plugins: dict[str, dict[str, Any]] = {}
    schedules: dict[str, SchedulePolicy] = {}


def semantic_problems(p: Policies) -> list[Problem]:
    """Every problem that needs more than one field to see, each at its key path."""
    problems: list[Problem] = []
    problems += _reference_problems(p)
    problems += _executor_problems(p.executor)
    problems += _database_problems(p.database)
    problems += _timeout_problems(
        "executor", p.executor.task_timeout, p.executor.retry, p, key="task_timeout"
    )
    problems += _timeout_problems(
        "database", p.database.query_timeout, p.database.retry, p, key="query_timeout"
    )
    for name, retry in p.retry.items():
        problems += _retry_problems(f"retry.{name}", retry)
    for name, breaker in p.breaker.items():
        problems += _breaker_problems(f"breaker.{name}", breaker)
    for name, service in p.services.items():
        problems += _timeout_problems(
            f"services.{table_key(name)}", service.timeout, service.retry, p
        )
    for kind, task in p.tasks.items():
        timeout = task.timeout if task.timeout is not None else p.executor.task_timeout
        path = f"tasks.{table_key(kind)}"
        problems += _timeout_problems(path, timeout, task.retry or p.executor.retry, p)
        problems += _flow_problems(path, task, what="the kind")
        problems += _duplicate_limit_problems(path, task.limits)
    for name, limit in p.limits.items():
        problems += _flow_problems(f"limits.{table_key(name)}", limit, what="the limit")
    for name, schedule in p.schedules.items():
        problems += _schedule_problems(f"schedules.{table_key(name)}", schedule)
    problems += _threshold_problems("pool_alerts.utilization", p.pool_alerts.utilization)
    problems += _threshold_problems("pool_alerts.acquire_wait", p.pool_alerts.acquire_wait)
    if p.pool_alerts.utilization.critical > 1:
        problems.append(_bad("pool_alerts.utilization.critical", "must be ≤ 1 (a fraction)"))
    return problems


def table_key(name: str) -> str:
    """A table key as it appears in a dotted path: quoted when it contains a dot."""
    return f'"{name}"' if "." in name or " " in name else name


def _bad(path: str, message: str) -> Problem:
    return Problem(path=path, message=message)


def _reference_problems(p: Policies) -> list[Problem]:
    refs: list[tuple[str, str | None, str, dict[str, Any]]] = [
        ("executor.retry", p.executor.retry, "retry", p.retry),
        ("database.retry", p.database.retry, "retry", p.retry),
    ]
    for name, s in p.services.items():
        refs.append((f"services.{table_key(name)}.retry", s.retry, "retry", p.retry))
        refs.append((f"services.{table_key(name)}.breaker", s.breaker, "breaker", p.breaker))
    for kind, t in p.tasks.items():
        base = f"tasks.{table_key(kind)}"
        refs.append((f"{base}.retry", t.retry, "retry", p.retry))
        refs.append((f"{base}.breaker", t.breaker, "breaker", p.breaker))
        refs.append((f"{base}.service", t.service, "services", p.services))
        refs += [
            (f"{base}.limits[{i}]", name, "limits", p.limits) for i, name in enumerate(t.limits)
        ]
    return [
        _bad(
            path,
            f"no [{section}.{name}] is defined (defined: {', '.join(sorted(defined)) or 'none'})",
        )
        for path, name, section, defined in refs
        if name is not None and name not in defined
    ]


def _flow_problems(path: str, f: TaskBinding | LimitPolicy, *, what: str) -> list[Problem]:
    """A ``burst`` without a ``rate`` to size, and a ``partition`` with nothing to split:
    keys that would silently do nothing."""
    problems = []
    if "burst" in f.model_fields_set and f.rate is None:
        problems.append(
            _bad(
                f"{path}.burst",
                f"has no effect: {what} sets no rate, and the burst is the size of a rate's "
                'token bucket; set a rate (like rate = "100/s") or remove burst',
            )
        )
    if f.partition is not None and not f.partition.isidentifier():
        problems.append(
            _bad(
                f"{path}.partition",
                f"{f.partition!r} is not a payload field name; name a top-level field of "
                "the payload, like 'account_id'",
            )
        )
    elif f.partition is not None and f.concurrency is None and f.rate is None:
        own = (
            " (a [limits.NAME] it lists has a partition of its own)"
            if isinstance(f, TaskBinding) and f.limits
            else ""
        )
        problems.append(
            _bad(
                f"{path}.partition",
                f"partitions nothing: {what} sets neither concurrency nor rate{own}; set one "
                "(it then applies per value of the field), or remove partition",
            )
        )
    return problems


def _duplicate_limit_problems(path: str, limits: tuple[str, ...]) -> list[Problem]:
    return [
        _bad(f"{path}.limits[{i}]", f"lists {name!r} twice; a kind counts once against a limit")
        for i, name in enumerate(limits)
        if name in limits[:i]
    ]


def _executor_problems(e: ExecutorPolicy) -> list[Problem]:
    problems = []
    if e.heartbeat >= e.lease:
        problems.append(
            _bad(
                "executor.heartbeat",
                f"must be shorter than executor.lease ({format_duration(e.lease)}), "
                f"or live workers are presumed dead (got {format_duration(e.heartbeat)})",
            )
        )
    problems += [
        _bad(f"executor.{name}", "must be longer than 0s")
        for name in ("lease", "heartbeat", "poll_interval")
        if getattr(e, name) <= 0
    ]
    return problems


def _database_problems(d: DatabasePolicy) -> list[Problem]:
    problems = []
    if d.pool_min_size > d.pool_max_size:
        problems.append(
            _bad(
                "database.pool_min_size",
                f"must be ≤ database.pool_max_size ({d.pool_max_size}) (got {d.pool_min_size})",
            )
        )
    return problems


def _retry_problems(path: str, r: RetryPolicy) -> list[Problem]:
    problems = []
    if r.max_delay < r.base_delay:
        problems.append(
            _bad(
                f"{path}.max_delay",
                f"must be ≥ base_delay ({format_duration(r.base_delay)}) "
                f"(got {format_duration(r.max_delay)})",
            )
        )
    if r.deadline <= 0:
        problems.append(_bad(f"{path}.deadline", "must be longer than 0s"))
    for i, name in enumerate(r.exceptions):
        if not _is_dotted_name(name):
            problems.append(
                _bad(
                    f"{path}.exceptions[{i}]",
                    f"{name!r} is not an exception name; write it as 'module.ClassName'",
                )
            )
    if r.budget is not None and r.budget.window <= 0:
        problems.append(_bad(f"{path}.budget.window", "must be longer than 0s"))
    return problems


def _is_dotted_name(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and all(part.isidentifier() for part in parts)


def _breaker_problems(path: str, b: BreakerPolicy) -> list[Problem]:
    problems = []
    if b.max_open_for < b.open_for:
        problems.append(
            _bad(
                f"{path}.max_open_for",
                f"must be ≥ open_for ({format_duration(b.open_for)}) "
                f"(got {format_duration(b.max_open_for)})",
            )
        )
    if b.open_for <= 0:
        problems.append(_bad(f"{path}.open_for", "must be longer than 0s"))
    if b.mode == "ratio" and b.window <= 0:
        problems.append(_bad(f"{path}.window", "must be longer than 0s"))
    if b.fallback == "static" and b.fallback_value is None:
        problems.append(_bad(f"{path}.fallback_value", 'is required when fallback = "static"'))
    return problems


def _schedule_problems(path: str, s: SchedulePolicy) -> list[Problem]:
    problems = []
    if s.cron is not None and s.every is not None:
        problems.append(_bad(f"{path}.every", "a schedule has cron or every, not both"))
    elif s.cron is None and s.every is None:
        problems.append(
            _bad(f"{path}.cron", 'is required: a cron expression, or every = a duration like "15m"')
        )
    if s.every is not None and s.every < MIN_EVERY:
        problems.append(
            _bad(
                f"{path}.every",
                f"must be at least {format_duration(MIN_EVERY)} (got {format_duration(s.every)})",
            )
        )
    elif s.every is not None and s.jitter >= s.every:
        problems.append(
            _bad(
                f"{path}.jitter",
                f"must be shorter than every ({format_duration(s.every)}), or a delayed fire "
                f"lands after the next one (got {format_duration(s.jitter)})",
            )
        )
    if s.catch_up_window <= 0:
        problems.append(_bad(f"{path}.catch_up_window", "must be longer than 0s"))
    return problems


def _timeout_problems(
    path: str, timeout: float, retry_name: str | None, p: Policies, *, key: str = "timeout"
) -> list[Problem]:
    if timeout <= 0:
        return [_bad(f"{path}.{key}", "must be longer than 0s")]
    retry = p.retry.get(retry_name) if retry_name else None
    if retry is not None and timeout > retry.deadline:
        return [
            _bad(
                f"{path}.{key}",
                f"one attempt's timeout ({format_duration(timeout)}) is longer than the "
                f"total deadline of retry.{retry_name} ({format_duration(retry.deadline)}); "
                "shorten the timeout or raise the deadline",
            )
        ]
    return []


def _threshold_problems(path: str, t: AlertThresholds | WaitThresholds) -> list[Problem]:
    if t.warn > t.critical:
        return [_bad(f"{path}.warn", f"must be ≤ critical ({t.critical:g}) (got {t.warn:g})")]
    return []
