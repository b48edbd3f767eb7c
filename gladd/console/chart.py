"""The overview's throughput chart: inline SVG drawn here, no script, no library.

One bar per minute: succeeded attempts in green with the failed ones stacked on top in
red; each bar's ``<title>`` says its numbers (a browser shows it on hover).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

from gladd.observe.throughput import Minute, minute_label

WIDTH = 720
HEIGHT = 160
_PLOT = HEIGHT - 24  # room below for the axis labels
_GAP = 2


def throughput_svg(minutes: Sequence[Minute], now: datetime) -> Markup:
    """The chart of ``minutes`` (oldest first) as an ``<svg>`` element."""
    most = max([m.succeeded + m.failed for m in minutes] + [1])
    step = WIDTH / max(len(minutes), 1)
    bars: list[str] = []
    for i, m in enumerate(minutes):
        x = i * step
        ok = _PLOT * m.succeeded / most
        bad = _PLOT * m.failed / most
        label = escape(
            f"{minute_label(m.start, now)} ({m.start:%H:%M} UTC): "
            f"{m.succeeded} succeeded, {m.failed} failed"
        )
        bars.append(
            f'<g class="minute"><title>{label}</title>'
            f'<rect class="ok" x="{x:.1f}" y="{_PLOT - ok:.1f}" width="{step - _GAP:.1f}" '
            f'height="{ok:.1f}"/>'
            f'<rect class="failed" x="{x:.1f}" y="{_PLOT - ok - bad:.1f}" '
            f'width="{step - _GAP:.1f}" height="{bad:.1f}"/></g>'
        )
    total_ok = sum(m.succeeded for m in minutes)
    total_failed = sum(m.failed for m in minutes)
    summary = escape(
        f"this node, last {len(minutes)} minutes: {total_ok} succeeded, {total_failed} failed"
    )
    svg = (
        f'<svg id="throughput" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" aria-label="{summary}" data-succeeded="{total_ok}" '
        f'data-failed="{total_failed}"><title>{summary}</title>'
        + "".join(bars)
        + f'<line class="axis" x1="0" y1="{_PLOT}" x2="{WIDTH}" y2="{_PLOT}"/>'
        f'<text x="0" y="{HEIGHT - 6}">-{len(minutes)} min</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 6}" text-anchor="end">now</text>'
        f'<text x="0" y="12">{most}/min</text></svg>'
    )
    return Markup(svg)  # noqa: S704 - every value in it is a number or escaped above
