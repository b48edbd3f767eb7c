"""Progress a handler reports (``ctx.progress(0.4, "page 4 of 10")``), written throttled.

A handler may report as often as it likes (every item of a loop); the store hears at most
one batch per :data:`PROGRESS_INTERVAL` from this node, holding each running task's latest
report: the first report after a quiet spell is written at once, later ones within the
interval, and the last one of an attempt before its outcome (the completer settles the
tasks of a batch first), so what ``gladd tasks show`` says when a task ends is what its
handler said last. Writes are fenced like outcomes: a task rescued to another node takes
no progress from the old attempt. Progress is advice, never worth failing a task over: a
write the store refuses is logged and kept for the next round (unless a newer report
replaced it), and one from a thread left running after its attempt ended is fenced out.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio
import anyio.from_thread
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import StoreError
from gladd.resilience.clock import Clock
from gladd.store import ProgressReport, Store, Task

PROGRESS_INTERVAL = 1.0
"""Seconds between this node's progress writes, at least."""

Report = Callable[[float, str | None], None]
"""What ``ctx.progress`` calls: (fraction, message)."""


def checked_fraction(fraction: object, message: object) -> float:
    """``fraction`` as a float in 0..1, or the error a plugin author needs to see.

    Out of range is refused, not clamped: a 40 meant as percent would otherwise show as
    done. A fraction from sums of floats that overshoots by rounding (1.0000000002) is
    taken as 1."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(
            f"ctx.progress(fraction, message): fraction must be a number from 0 to 1 "
            f"(done / total), got {type(fraction).__name__} {fraction!r}"
        )
    if message is not None and not isinstance(message, str):
        raise TypeError(
            f"ctx.progress(fraction, message): message must be a str or None, "
            f"got {type(message).__name__}"
        )
    value = float(fraction)
    if math.isfinite(value) and -1e-9 <= value <= 1 + 1e-9:
        return min(max(value, 0.0), 1.0)
    hint = f" (for {value:g} percent, pass {value / 100:g})" if 1 < value <= 100 else ""
    raise ValueError(
        f"ctx.progress(fraction, message): fraction must be from 0 to 1 (done / total), "
        f"got {fraction!r}{hint}"
    )


@dataclass(slots=True)
class ProgressBook:
    """The latest unwritten report of each task (pure: no I/O, no clock)."""

    _pending: dict[int, ProgressReport] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._pending)

    def report(self, report: ProgressReport) -> None:
        self._pending[report.id] = report

    def take(self, ids: Collection[int] | None = None) -> list[ProgressReport]:
        """The pending reports (of ``ids``, or all), no longer pending."""
        if ids is None:
            taken, self._pending = list(self._pending.values()), {}
            return taken
        return [self._pending.pop(i) for i in ids if i in self._pending]

    def restore(self, reports: Sequence[ProgressReport]) -> None:
        """Reports a write failed to store, pending again unless a newer one came."""
        for report in reports:
            self._pending.setdefault(report.id, report)


@dataclass(slots=True, kw_only=True, eq=False)
class ProgressWriter:
    """``await tg.start(writer.run)``; :meth:`reporter` for each attempt; :meth:`settle`
    the tasks whose outcomes are about to be written."""

    store: Store
    now: Callable[[], datetime]
    clock: Clock
    interval: float = PROGRESS_INTERVAL
    written: int = field(default=0, init=False)
    fenced: int = field(default=0, init=False)
    book: ProgressBook = field(default_factory=ProgressBook, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _ready: anyio.Event = field(default_factory=anyio.Event, init=False)
    _writing: anyio.Lock = field(default_factory=anyio.Lock, init=False)
    _loop_thread: int | None = field(default=None, init=False)

    def reporter(self, task: Task) -> Report:
        """``ctx.progress`` of one attempt at ``task``; callable from its worker thread. A
        report after the attempt's outcome (a thread left running) is fenced by the store."""

        def report(fraction: float, message: str | None = None) -> None:
            value = checked_fraction(fraction, message)
            with self._lock:
                self.book.report(
                    ProgressReport(
                        id=task.id,
                        token=task.token,
                        fraction=value,
                        message=message,
                        attempt=task.attempt,
                    )
                )
            self._wake()

        return report

    def _wake(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._ready.set()
            return
        # Not a worker thread of our loop, or the loop is gone: nobody left to write it.
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(self._ready.set)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._loop_thread = threading.get_ident()
        task_status.started()
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            await self._write(None)
            await self.clock.sleep(self.interval)  # the throttle

    async def settle(self, ids: Sequence[int]) -> None:
        """Write the pending reports of ``ids`` now (their outcomes come next), after any
        write under way."""
        await self._write(ids)

    async def _write(self, ids: Collection[int] | None) -> None:
        async with self._writing:
            with self._lock:
                reports = self.book.take(ids)
            if not reports:
                return
            try:
                stored = await self.store.record_progress(reports, now=self.now())
            except StoreError as exc:
                logger.debug("storing the progress of {} task(s) failed: {}", len(reports), exc)
                with self._lock:
                    self.book.restore(reports)
                return
            self.written += sum(stored)
            self.fenced += len(stored) - sum(stored)
