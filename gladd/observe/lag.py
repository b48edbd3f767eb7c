"""The event-loop lag monitor: how late the loop wakes up, and who kept it busy.

A loop blocked by synchronous work (the origin app's first critical bug: a blocking HTTP
call inside an async handler) stalls every task, timer and probe of the daemon. The monitor
sleeps ``[event_loop].interval`` and measures how much later than asked it woke up. Above
``lag_threshold`` it logs a warning naming what was running.

Naming the culprit needs someone awake while the loop is not: a small watcher thread. It
knows when the monitor is due to wake; once the loop is ``lag_threshold`` past that, it asks
which asyncio task the loop is running right now, looks it up in the
:mod:`~gladd.instruments.activity` registry (task kind, plugin) and notes the line of code the
loop thread is executing. The thread only reads; it never touches the loop.
"""

from __future__ import annotations

import asyncio
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.durations import format_duration
from gladd.instruments.activity import Activities, Activity, activities
from gladd.policies import Policies

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds; the upper bounds of the lag histogram's buckets."""

_STDLIB = tuple(
    {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]} | {"<frozen "}
)


@dataclass(slots=True)
class Histogram:
    """Cumulative bucket counts, as Prometheus wants them (the last bucket is +Inf)."""

    bounds: tuple[float, ...] = LAG_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def buckets(self) -> list[tuple[str, float]]:
        pairs = [
            (f"{bound:g}", float(n)) for bound, n in zip(self.bounds, self.counts, strict=True)
        ]
        return [*pairs, ("+Inf", float(self.count))]


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    """The loop woke ``lag`` seconds late; ``culprit`` is what ran while it was caught
    stalled (None when the stall was too short to catch; ``in_flight`` is then what was
    in progress), ``where`` the line the loop thread was executing."""

    lag: float
    culprit: Activity | None = None
    where: str | None = None
    in_flight: tuple[Activity, ...] = ()

    @property
    def kind(self) -> str:
        """The metric label: the culprit's name, or ``unknown``."""
        return self.culprit.name if self.culprit is not None else "unknown"

    def message(self, threshold: float) -> str:
        head = (
            f"event loop blocked for {format_duration(self.lag)} "
            f"(lag threshold {format_duration(threshold)})"
        )
        if self.culprit is not None:
            text = f"{head} by {self.culprit.describe()}"
        elif self.where is not None:
            text = f"{head} by code outside any task or plugin"
        elif self.in_flight:
            text = f"{head}; in progress: " + ", ".join(a.describe() for a in self.in_flight)
        else:
            text = f"{head}; no task or plugin was running"
        if self.where is not None:
            text += f", at {self.where}"
        return text + ": synchronous work in async code stalls everything; use a thread"


def where(frame: FrameType | None) -> str | None:
    """The innermost line being executed, and the nearest line outside the standard
    library when that is not it (the caller of the blocking call)."""
    if frame is None:
        return None
    inner = _line(frame)
    f: FrameType | None = frame
    while f is not None and f.f_code.co_filename.startswith(_STDLIB):
        f = f.f_back
    if f is None or f is frame:
        return inner
    return f"{inner}, called from {_line(f)}"


def _line(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


class StallWatcher:
    """The thread that catches the culprit of a stall while it lasts."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        loop_thread: int,
        registry: Activities,
        threshold: Callable[[], float],
    ) -> None:
        self._loop = loop
        self._loop_thread = loop_thread
        self._registry = registry
        self._threshold = threshold
        self._due: float | None = None
        self._caught: tuple[float, Activity | None, str | None] | None = None
        self._stop = threading.Event()
        self._armed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gladd-lag-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._armed.set()

    def due(self, at: float | None) -> None:
        """The loop should wake at ``at`` (monotonic); None: not sleeping."""
        self._due = at
        if at is not None:
            self._armed.set()

    def take(self, due: float) -> tuple[Activity | None, str | None] | None:
        """What was caught during the stall past ``due``, if anything."""
        caught, self._caught = self._caught, None
        if caught is None or caught[0] != due:
            return None
        return caught[1], caught[2]

    def _watch(self) -> None:
        # Sleeps until the moment a stall would begin (the loop's wake-up time plus the
        # threshold), so an idle daemon costs a couple of wake-ups per tick, not a spin.
        while not self._stop.is_set():
            due = self._due
            if due is None or (self._caught is not None and self._caught[0] == due):
                self._armed.wait(1.0)
                self._armed.clear()
                continue
            remaining = due + self._threshold() - time.monotonic()
            if remaining > 0:
                self._stop.wait(remaining)
            elif self._due == due:
                self._caught = (due, *self._catch())

    def _catch(self) -> tuple[Activity | None, str | None]:
        task = asyncio.current_task(self._loop)
        frame = sys._current_frames().get(self._loop_thread)
        return self._registry.of(task), where(frame)


class LagMonitor:
    """``await tg.start(monitor.run)``; read :attr:`last`, :meth:`take_peak`, :attr:`blocks`
    and :attr:`histogram`."""

    def __init__(
        self, policies: Callable[[], Policies], *, registry: Activities = activities
    ) -> None:
        self._policies = policies
        self._registry = registry
        self.last = 0.0
        self._peak = 0.0
        self.histogram = Histogram()
        self.blocks: Counter[str] = Counter()
        """Lags over the threshold, by culprit kind (``unknown`` when none was caught)."""

    def threshold(self) -> float:
        return self._policies().event_loop.lag_threshold

    def take_peak(self) -> float:
        """The largest lag since the previous call (for the periodic health check)."""
        peak, self._peak = max(self._peak, self.last), 0.0
        return peak

    def record(self, lag: float, blocked: Blocked | None = None) -> None:
        self.last = lag
        self._peak = max(self._peak, lag)
        self.histogram.observe(lag)
        if blocked is not None:
            self.blocks[blocked.kind] += 1
            logger.warning("{}", blocked.message(self.threshold()))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        watcher = StallWatcher(
            asyncio.get_running_loop(), threading.get_ident(), self._registry, self.threshold
        )
        watcher.start()
        try:
            task_status.started()
            while True:
                await self._tick(watcher)
        finally:
            watcher.stop()

    async def _tick(self, watcher: StallWatcher) -> None:
        interval = self._policies().event_loop.interval
        due = time.monotonic() + interval
        watcher.due(due)
        await anyio.sleep(interval)
        lag = max(0.0, time.monotonic() - due)
        watcher.due(None)
        blocked = None
        if lag >= self.threshold():
            caught = watcher.take(due)
            if caught is None:
                blocked = Blocked(lag=lag, in_flight=tuple(self._registry.now()))
            else:
                blocked = Blocked(lag=lag, culprit=caught[0], where=caught[1])
        self.record(lag, blocked)
