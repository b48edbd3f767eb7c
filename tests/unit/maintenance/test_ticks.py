"""The schedule planner: fire times, catch-up after a gap, DST as Debian's cron, jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gladd.maintenance.ticks import (
    MAX_CATCH_UP,
    jitter_for,
    latest_tick,
    plan,
    spec_of,
    ticks_after,
)
from gladd.policies import SchedulePolicy

BERLIN = ZoneInfo("Europe/Berlin")


def schedule(**keys: Any) -> SchedulePolicy:
    return SchedulePolicy.model_validate({"kind": "gladd.noop", **keys})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def berlin(*parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=BERLIN, fold=fold).astimezone(UTC)  # type: ignore[misc]


def test_every_is_aligned_to_the_epoch_so_all_nodes_agree() -> None:
    s = schedule(every="15m")
    assert ticks_after(s, utc(2026, 12, 3, 10, 7, 3), 3) == [
        utc(2026, 12, 3, 10, 15),
        utc(2026, 12, 3, 10, 30),
        utc(2026, 12, 3, 10, 45),
    ]
    # Strictly after: a tick is not its own successor.
    assert ticks_after(s, utc(2026, 12, 3, 10, 15), 1) == [utc(2026, 12, 3, 10, 30)]
    # A period that does not divide a day still counts from the epoch, not from midnight.
    assert ticks_after(schedule(every="7m"), utc(2026, 12, 3), 1) == [
        datetime.fromtimestamp((utc(2026, 12, 3).timestamp() // 420 + 1) * 420, UTC)
    ]


def test_a_new_schedule_starts_from_its_latest_tick_without_catching_up() -> None:
    every = schedule(every="1h")
    assert latest_tick(every, utc(2026, 12, 3, 10, 59)) == utc(2026, 12, 3, 10)
    assert latest_tick(every, utc(2026, 12, 3, 10)) == utc(2026, 12, 3, 10)
    nightly = schedule(cron="0 3 * * *", timezone="Europe/Berlin")
    start = latest_tick(nightly, utc(2026, 12, 3, 12))
    assert start == berlin(2026, 12, 3, 3)
    assert latest_tick(nightly, start) == start
    nothing = plan(nightly, last_tick=start, now=utc(2026, 12, 3, 12))
    assert nothing.fire == ()
    assert nothing.advance_to is None
    assert nothing.next_due == berlin(2026, 12, 4, 3)


def test_on_time_tick_fires_and_advances() -> None:
    s = schedule(every="1m")
    p = plan(s, last_tick=utc(2026, 12, 3, 10), now=utc(2026, 12, 3, 10, 1, 2))
    assert p.fire == (utc(2026, 12, 3, 10, 1),)
    assert p.late == 0
    assert p.skipped == ()
    assert p.advance_to == utc(2026, 12, 3, 10, 1)
    assert p.next_due == utc(2026, 12, 3, 10, 2)


# An hourly schedule down from 00:00 to 05:20: ticks 01:00..05:00 are due, all in the window.
GAP = {"last_tick": utc(2026, 12, 3), "now": utc(2026, 12, 3, 5, 20)}
DUE = tuple(utc(2026, 12, 3, hour) for hour in range(1, 6))


def test_catch_up_latest_fires_the_newest_due_tick_only() -> None:
    p = plan(schedule(every="1h"), **GAP)
    assert p.fire == DUE[-1:]
    assert p.skipped == DUE[:-1]
    assert p.late == 1
    assert p.advance_to == DUE[-1]
    assert p.next_due == utc(2026, 12, 3, 6)


def test_catch_up_all_fires_every_due_tick_oldest_first() -> None:
    p = plan(schedule(every="1h", catch_up="all"), **GAP)
    assert p.fire == DUE
    assert p.skipped == ()
    assert p.late == 5


def test_catch_up_none_fires_nothing_late() -> None:
    p = plan(schedule(every="1h", catch_up="none"), **GAP)
    assert p.fire == ()
    assert p.skipped == DUE
    assert p.advance_to == DUE[-1]
    on_time = plan(schedule(every="1h", catch_up="none"), last_tick=DUE[0], now=DUE[-1])
    assert on_time.fire == DUE[-1:]
    assert on_time.late == 0


def test_on_time_means_within_30s_or_the_period_when_shorter() -> None:
    minutely = schedule(every="1m", catch_up="none")
    assert plan(minutely, last_tick=utc(2026, 12, 3), now=utc(2026, 12, 3, 0, 1, 30)).fire
    assert not plan(minutely, last_tick=utc(2026, 12, 3), now=utc(2026, 12, 3, 0, 1, 31)).fire
    ten = schedule(every="10s")
    p = plan(ten, last_tick=utc(2026, 12, 3), now=utc(2026, 12, 3, 0, 0, 19))
    assert p.fire == (utc(2026, 12, 3, 0, 0, 10),)
    assert p.late == 0


def test_ticks_older_than_the_window_are_always_skipped() -> None:
    s = schedule(every="1h", catch_up="all", catch_up_window="2h")
    p = plan(s, **GAP)
    assert p.fire == (utc(2026, 12, 3, 4), utc(2026, 12, 3, 5))
    assert p.skipped == DUE[:3]
    # A tick exactly one window old is still inside it.
    p = plan(s, last_tick=utc(2026, 12, 3), now=utc(2026, 12, 3, 5))
    assert p.fire == (utc(2026, 12, 3, 3), utc(2026, 12, 3, 4), utc(2026, 12, 3, 5))
    # Everything older: nothing fires, but the schedule still moves on.
    stale = schedule(every="1d", catch_up_window="1h")
    p = plan(stale, last_tick=utc(2026, 11, 1), now=utc(2026, 12, 3, 5))
    assert p.fire == ()
    assert len(p.skipped) == 32
    assert p.advance_to == utc(2026, 12, 3)
    assert p.next_due == utc(2026, 12, 4)


def test_catch_up_all_is_bounded() -> None:
    s = schedule(every="1m", catch_up="all")
    p = plan(s, last_tick=utc(2026, 12, 3), now=utc(2026, 12, 3, 3))
    assert len(p.fire) == MAX_CATCH_UP
    assert p.fire[-1] == utc(2026, 12, 3, 3)
    assert p.fire == tuple(sorted(p.fire))
    assert len(p.skipped) == 180 - MAX_CATCH_UP
    assert p.skipped[-1] < p.fire[0]


def test_utc_cron_schedule() -> None:
    s = schedule(cron="0 */6 * * 1-5")
    # After Friday 2026-12-04 20:00 UTC the weekend passes: Monday 00:00, 06:00, 12:00.
    assert ticks_after(s, utc(2026, 12, 4, 20), 3) == [
        utc(2026, 12, 7, 0),
        utc(2026, 12, 7, 6),
        utc(2026, 12, 7, 12),
    ]
    assert latest_tick(s, utc(2026, 12, 6, 12)) == utc(2026, 12, 4, 18)


def test_spring_forward_a_job_in_the_skipped_hour_runs_once_at_the_jump() -> None:
    # 2027-03-28: Berlin's clocks go from 02:00 CET straight to 03:00 CEST (01:00 UTC).
    s = schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    assert ticks_after(s, berlin(2027, 3, 27, 12), 3) == [
        berlin(2027, 3, 28, 3),
        berlin(2027, 3, 29, 2, 30),
        berlin(2027, 3, 30, 2, 30),
    ]
    assert berlin(2027, 3, 28, 3) == utc(2027, 3, 28, 1)
    assert latest_tick(s, utc(2027, 3, 28, 1, 10)) == utc(2027, 3, 28, 1)
    p = plan(s, last_tick=berlin(2027, 3, 27, 2, 30), now=utc(2027, 3, 28, 1, 0, 5))
    assert p.fire == (utc(2027, 3, 28, 1),)
    assert p.late == 0


def test_fall_back_a_job_in_the_repeated_hour_runs_once() -> None:
    # 2027-10-31: 03:00 CEST becomes 02:00 CET again; 02:30 happens twice.
    s = schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    assert ticks_after(s, berlin(2027, 10, 30, 12), 2) == [
        berlin(2027, 10, 31, 2, 30),  # the first 02:30, CEST: 00:30 UTC
        berlin(2027, 11, 1, 2, 30),
    ]
    assert berlin(2027, 10, 31, 2, 30) == utc(2027, 10, 31, 0, 30)
    assert latest_tick(s, berlin(2027, 10, 31, 2, 45, fold=1)) == utc(2027, 10, 31, 0, 30)


@pytest.mark.parametrize(
    ("night", "start"),
    [(utc(2027, 3, 27, 22), "spring forward"), (utc(2027, 10, 30, 22), "fall back")],
)
def test_hourly_runs_once_per_real_hour_across_transitions(night: datetime, start: str) -> None:
    s = schedule(cron="0 * * * *", timezone="Europe/Berlin")
    ticks = ticks_after(s, night, 8)
    assert ticks == [night + timedelta(hours=h) for h in range(1, 9)], start


def test_wildcard_minutes_in_the_skipped_hour_do_not_run_as_debian_cron() -> None:
    # Debian cron(8): jobs with '*' in the minute or hour field run on the new time only.
    s = schedule(cron="*/15 2 * * *", timezone="Europe/Berlin")
    assert ticks_after(s, berlin(2027, 3, 28, 0), 1) == [berlin(2027, 3, 29, 2)]
    # ... and in the repeated hour they run in both passes.
    assert len(ticks_after(s, berlin(2027, 10, 31, 0), 8)) == 8
    assert ticks_after(s, berlin(2027, 10, 31, 0), 8)[-1] == utc(2027, 10, 31, 1, 45)


def test_jitter_is_the_same_on_every_node_and_inside_its_range() -> None:
    tick = utc(2026, 12, 3, 3)
    assert jitter_for("nightly", tick, 60.0) == jitter_for("nightly", tick, 60.0)
    assert jitter_for("nightly", tick, 0.0) == 0.0
    delays = [jitter_for("nightly", tick + timedelta(hours=h), 60.0) for h in range(500)]
    assert all(0.0 <= d < 60.0 for d in delays)
    assert len(set(delays)) > 450
    assert max(delays) > 50
    assert min(delays) < 10
    assert jitter_for("other", tick, 60.0) != jitter_for("nightly", tick, 60.0)
    assert jitter_for("nightly", tick.astimezone(BERLIN), 60.0) == jitter_for("nightly", tick, 60.0)


def test_spec_changes_with_the_timing_only() -> None:
    base = spec_of(schedule(cron="0 3 * * *"))
    assert spec_of(schedule(cron="0  3 * * *", kind="other", jitter="1m")) == base
    assert spec_of(schedule(cron="0 4 * * *")) != base
    assert spec_of(schedule(cron="0 3 * * *", timezone="Europe/Berlin")) != base
    assert spec_of(schedule(every="1h")) != spec_of(schedule(every="2h"))


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        ticks_after(schedule(every="1h"), datetime(2026, 12, 3), 1)
