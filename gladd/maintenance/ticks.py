"""When a ``[schedules.NAME]`` fires, and what to do after a gap: the pure planner.

No I/O and no clock: every function takes the time it reasons about, as timezone-aware
datetimes, and answers in UTC. The scheduler service (the async shell) persists
``last_tick`` per schedule and acts on the :class:`Plan` that :func:`plan` returns.

``every`` ticks sit on multiples of the period since the Unix epoch, so every node computes
the same fire times without talking to the others, and a restart does not shift them.

``cron`` ticks are computed in the schedule's time zone by cronsim, chosen over croniter
because it handles daylight-saving transitions the way Debian's cron does (cron(8),
"Special considerations exist when the clock is changed by less than 3 hours"), which is
what operators of cron expect, while croniter's results around transitions have differed
between its releases; cronsim is also small, typed and without dependencies. Verified in
``tests/unit/maintenance/test_ticks.py`` (Europe/Berlin, 2027):

- spring forward: a job at a fixed time in the skipped hour (``30 2 * * *``) runs once, at
  the moment the clock jumps (03:00 local); a job with ``*`` in its minute or hour field
  (``0 * * * *``, ``*/15 2 * * *``) runs on the new local time, so the skipped hour has
  no runs of it: hourly still runs once per real hour;
- fall back: a fixed-time job in the repeated hour runs once (the first 02:30); a wildcard
  job runs in both passes of that hour (hourly: once per real hour).

One difference, kept on purpose: Debian runs each fixed-time job skipped by a jump once,
so ``0,30 2 * * *`` runs twice at 03:00; a schedule's fire time is an instant, and two
fire times at one instant are one tick here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

from cronsim import CronSim

from gladd.durations import format_duration
from gladd.policies import SchedulePolicy

ON_TIME = 30.0
"""A fire this close to its tick (seconds) is on time; the bound is the period to the next
tick when that is shorter."""
MAX_CATCH_UP = 100
"""``catch_up = "all"`` fires at most this many missed ticks, the newest; older ones are
skipped, so an outage cannot flood the queue."""
MAX_SKIPPED_LISTED = 1000
"""At most this many ticks older than the window are listed in :attr:`Plan.skipped` (the
oldest): a long outage of a frequent schedule passes over millions, which are not built."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a schedule should do now (see :func:`plan`)."""

    fire: tuple[datetime, ...]
    """Ticks to enqueue now, oldest first."""
    skipped: tuple[datetime, ...]
    """Due ticks passed over: older than ``catch_up_window``, or dropped by ``catch_up``."""
    late: int
    """How many of ``fire`` are catch-ups, not on time."""
    advance_to: datetime | None
    """The new ``last_tick``: the newest due tick; None when nothing is due."""
    next_due: datetime
    """The first tick after ``advance_to`` (after ``last_tick`` when nothing is due)."""


def spec_of(s: SchedulePolicy) -> str:
    """A fingerprint of the schedule's timing: when it changes, ``last_tick`` is rebased
    (with :func:`latest_tick`) instead of catching up on ticks of the old timing."""
    if s.cron is not None:
        return f"cron {' '.join(s.cron.split())} {s.timezone}"
    return f"every {format_duration(_period(s))} {s.timezone}"


def ticks_after(s: SchedulePolicy, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, in UTC."""
    return list(islice(_ticks(s, _utc(after)), count))


def latest_tick(s: SchedulePolicy, at: datetime) -> datetime:
    """The latest fire time at or before ``at``: where a schedule seen for the first time
    starts from, so it does not catch up on ticks from before it existed."""
    at = _utc(at)
    if s.cron is None:
        period = _period_us(s)
        return _EPOCH + timedelta(microseconds=_us(at) // period * period)
    # cronsim going backwards is not guaranteed to agree with it going forwards around
    # DST transitions; forwards is what fires, so take its last tick at or before ``at``.
    back = CronSim(s.cron, at.astimezone(s.zone), reverse=True)
    candidate = next(back).astimezone(UTC)
    found = candidate
    for tick in _ticks(s, candidate - timedelta(seconds=1)):
        if tick > at:
            break
        found = tick
    return found


def jitter_for(name: str, tick: datetime, jitter: float) -> float:
    """The delay, in ``[0, jitter)`` seconds, of schedule ``name``'s fire at ``tick``: a hash
    of both, so every node computes the same delay and a retried plan enqueues the same
    ``run_at``."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{name}\0{_utc(tick).isoformat()}".encode()).digest()
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
    return min(fraction * jitter, math.nextafter(jitter, 0.0))


def plan(s: SchedulePolicy, *, last_tick: datetime, now: datetime) -> Plan:
    """Which ticks in ``(last_tick, now]`` fire now, which are passed over, and where the
    schedule goes next.

    Ticks older than ``catch_up_window`` are always skipped. Of the rest, ``catch_up``
    decides: ``"all"`` fires each (the newest :data:`MAX_CATCH_UP`), ``"latest"`` the newest
    only, ``"none"`` the newest only if it is on time (:data:`ON_TIME`).
    """
    last_tick, now = _utc(last_tick), _utc(now)
    newest = latest_tick(s, now)
    if newest <= last_tick:
        return Plan(
            fire=(), skipped=(), late=0, advance_to=None, next_due=_first_after(s, last_tick)
        )
    window_start = now - timedelta(seconds=s.catch_up_window)
    old_end = min(now, window_start - _MICROSECOND)
    old = _between(s, last_tick, old_end, limit=MAX_SKIPPED_LISTED)
    recent = _between(s, max(last_tick, old_end), now)
    fire, dropped = _choose(s, recent, now)
    return Plan(
        fire=tuple(fire),
        skipped=(*old, *dropped),
        late=sum(1 for tick in fire if not _on_time(s, tick, now)),
        advance_to=newest,
        next_due=_first_after(s, newest),
    )


def _choose(
    s: SchedulePolicy, recent: list[datetime], now: datetime
) -> tuple[list[datetime], list[datetime]]:
    """Split the due ticks inside the window into (fire, skipped) by ``catch_up``."""
    if not recent:
        return [], []
    if s.catch_up == "all":
        keep = recent[-MAX_CATCH_UP:]
        return keep, recent[: len(recent) - len(keep)]
    if s.catch_up == "none" and not _on_time(s, recent[-1], now):
        return [], recent
    return recent[-1:], recent[:-1]


def _on_time(s: SchedulePolicy, tick: datetime, now: datetime) -> bool:
    limit = min(timedelta(seconds=ON_TIME), _first_after(s, tick) - tick)
    return now - tick <= limit


def _between(
    s: SchedulePolicy, after: datetime, until: datetime, *, limit: int | None = None
) -> list[datetime]:
    """The ticks in ``(after, until]``, oldest first, at most ``limit`` (the oldest)."""
    if until <= after:
        return []
    found: list[datetime] = []
    for tick in _ticks(s, after):
        if tick > until or (limit is not None and len(found) >= limit):
            break
        found.append(tick)
    return found


def _first_after(s: SchedulePolicy, after: datetime) -> datetime:
    return next(_ticks(s, after))


def _ticks(s: SchedulePolicy, after: datetime) -> Iterator[datetime]:
    """Every fire time strictly after ``after`` (UTC), oldest first, each once."""
    if s.cron is None:
        period = _period_us(s)
        n = _us(after) // period + 1
        while True:
            yield _EPOCH + timedelta(microseconds=n * period)
            n += 1
    previous = after
    for local in CronSim(s.cron, after.astimezone(s.zone)):
        tick = local.astimezone(UTC)
        # Two local times can name one instant (a DST jump), and cronsim starts on the
        # whole second of a start with microseconds: keep each instant once, after ``after``.
        if tick > previous:
            previous = tick
            yield tick


def _period(s: SchedulePolicy) -> float:
    if s.every is None:
        raise ValueError("a cron schedule has no fixed period")
    return s.every


def _period_us(s: SchedulePolicy) -> int:
    return max(1, round(_period(s) * 1_000_000))


def _us(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at!r} has no time zone; pass timezone-aware datetimes")
    return at.astimezone(UTC)
