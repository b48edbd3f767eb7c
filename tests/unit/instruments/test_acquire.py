"""Acquire waits: finished ones summed, unfinished ones visible while they last."""

from __future__ import annotations

from gladd.instruments.acquire import AcquireMeter


def test_waits_are_summed_and_the_longest_current_one_is_seen() -> None:
    now = [10.0]
    meter = AcquireMeter(clock=lambda: now[0])
    first = meter.begin()
    now[0] = 10.5
    second = meter.begin()
    now[0] = 11.0
    assert (meter.waiting, meter.longest_wait()) == (2, 1.0)
    meter.end(first)
    assert (meter.acquisitions, meter.total_wait, meter.waiting) == (1, 1.0, 1)
    assert meter.longest_wait() == 0.5
    now[0] = 11.25
    meter.end(second)
    meter.end(second)  # ending twice counts once
    assert (meter.acquisitions, meter.total_wait) == (2, 1.75)
    assert meter.longest_wait() == 0.0
