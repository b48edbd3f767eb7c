"""This node's per-minute ring of the executor's counts, and the chart drawn from it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gladd.console.chart import throughput_svg
from gladd.executor.statistics import ExecutorStatistics
from gladd.observe.throughput import ThroughputRing

T0 = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)


class Counts:
    def __init__(self) -> None:
        self.now = ExecutorStatistics()

    def add(self, succeeded: int = 0, failed: int = 0) -> None:
        self.now = replace(
            self.now, succeeded=self.now.succeeded + succeeded, failed=self.now.failed + failed
        )


def test_each_minute_shows_the_work_done_in_it() -> None:
    counts = Counts()
    ring = ThroughputRing(lambda: counts.now, minutes=5)
    counts.add(succeeded=3, failed=1)
    ring.sample(T0)
    counts.add(succeeded=2)
    ring.sample(T0 + timedelta(seconds=40))  # the same minute: its totals so far
    counts.add(failed=4)
    # A minute with no samples (12:01) shows nothing; 12:02 gets what came since 12:00.
    shown = ring.minutes(T0 + timedelta(minutes=2))
    assert [(m.start.strftime("%H:%M"), m.succeeded, m.failed) for m in shown] == [
        ("11:58", 0, 0),
        ("11:59", 0, 0),
        ("12:00", 5, 1),
        ("12:01", 0, 0),
        ("12:02", 0, 4),
    ]


def test_minutes_older_than_the_ring_are_forgotten_but_not_recounted() -> None:
    counts = Counts()
    ring = ThroughputRing(lambda: counts.now, minutes=3)
    counts.add(succeeded=10)
    ring.sample(T0)
    counts.add(succeeded=1)
    shown = ring.minutes(T0 + timedelta(minutes=10))
    assert [(m.succeeded, m.failed) for m in shown] == [(0, 0), (0, 0), (1, 0)]


def test_the_chart_says_its_totals_and_each_minute() -> None:
    counts = Counts()
    ring = ThroughputRing(lambda: counts.now, minutes=60)
    counts.add(succeeded=7, failed=2)
    now = T0 + timedelta(minutes=3)
    svg = str(throughput_svg(ring.minutes(now), now))
    assert svg.startswith('<svg id="throughput"')
    assert 'data-succeeded="7" data-failed="2"' in svg
    assert "this node, last 60 minutes: 7 succeeded, 2 failed" in svg
    assert "this minute (12:03 UTC): 7 succeeded, 2 failed" in svg
    assert svg.count('<g class="minute">') == 60
